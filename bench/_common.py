"""Shared set-up for the benchmarks: a throw-away data directory and database, Django, and
the table printing (medians of several runs, and ratios against a baseline of the same run)."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(prefix: str) -> Path:
    """A fresh STEWARD_HOME (SQLite database inside), Django set up, migrations applied."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    home = Path(tempfile.mkdtemp(prefix=f"steward-bench-{prefix}-"))
    os.environ["STEWARD_HOME"] = str(home)
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    os.environ.setdefault("STEWARD_DEBUG", "0")
    for name in ("DATABASE_URL", "REDIS_URL", "STEWARD_DB_PATH"):
        os.environ.pop(name, None)  # always the embedded default: SQLite in the data directory
    os.chdir(ROOT)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from credentials import crypto

    if not crypto.load_keys():
        crypto.create_key_file()
    return home


def cleanup(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)


def timed(func: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = func()
    return (time.perf_counter() - started) * 1000, result


def measure(func: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        func()
    return [timed(func)[0] for _ in range(runs)]


def measure_wall_and_cpu(
    func: Callable[[], object], runs: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds (this thread) of ``runs`` calls. On a loaded machine the CPU
    time of single-threaded work is the steadier number: wall time includes waiting for a core."""
    for _ in range(warmup):
        func()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.thread_time()
        func()
        cpus.append((time.thread_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
    return walls, cpus


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "p90": p90,
        "max": ordered[-1],
    }


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """``columns``: (key, header). Numbers are printed with one decimal."""
    print(f"\n{title}")

    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    cells = [[fmt(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [
        max(len(header), *(len(r[i]) for r in cells)) if cells else len(header)
        for i, (_, header) in enumerate(columns)
    ]
    line = "  ".join(header.ljust(w) for (_, header), w in zip(columns, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(value.ljust(w) for value, w in zip(row, widths, strict=True)))


def machine() -> str:
    import platform

    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
