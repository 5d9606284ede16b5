"""Builds ``agent.pyz`` from ``nodes/agent/`` byte-for-byte reproducibly, and caches it.

The archive is a zipapp: a ``#!/usr/bin/env python3`` line, then a zip holding the package as
``steward_agent/`` and a ``__main__.py`` that refuses Pythons older than 3.8. Entries are
sorted, stored uncompressed (so zlib versions cannot change the bytes) with a fixed timestamp
and mode, so the same sources always give the same sha256 on every controller: the SSH
launcher compares it with the remote file's hash to skip the copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path

AGENT_SOURCE_DIR = Path(__file__).resolve().parent / "agent"
PACKAGE_NAME = "steward_agent"
FILE_NAME = "agent.pyz"
SHEBANG = b"#!/usr/bin/env python3\n"
MIN_PYTHON = (3, 8)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_FILE_MODE = 0o100644 << 16

# Runs on any Python (even 2.7) far enough to print why it stops.
ROOT_MAIN = f"""\
import sys

if sys.version_info < {MIN_PYTHON!r}:
    sys.stderr.write(
        "The Steward agent needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later; "
        "%s is Python %s.\\n" % (sys.executable, sys.version.split()[0])
    )
    sys.exit(3)

from {PACKAGE_NAME}.cli import main

sys.exit(main())
"""

_lock = threading.Lock()
_cache: dict[tuple, tuple[bytes, str]] = {}


def _sources(source_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in source_dir.rglob("*.py")
        if "__pycache__" not in p.parts and not p.name.startswith(".")
    )


def _signature(files: list[Path]) -> tuple:
    """Changes whenever a source file is edited, added or removed (cheap: stat only)."""
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def _entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = _FILE_MODE
    info.create_system = 3  # Unix, whatever the building OS
    zf.writestr(info, data)


def build_archive(source_dir: Path = AGENT_SOURCE_DIR) -> bytes:
    """The archive's bytes, built from ``source_dir`` (no caching)."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as zf:
        _entry(zf, "__main__.py", ROOT_MAIN.encode())
        for path in _sources(source_dir):
            name = f"{PACKAGE_NAME}/{path.relative_to(source_dir).as_posix()}"
            _entry(zf, name, path.read_bytes())
    return buffer.getvalue()


def _built() -> tuple[bytes, str]:
    files = _sources(AGENT_SOURCE_DIR)
    key = _signature(files)
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            data = build_archive(AGENT_SOURCE_DIR)
            hit = (data, hashlib.sha256(data).hexdigest())
            _cache.clear()
            _cache[key] = hit
        return hit


def agent_bytes() -> bytes:
    """The current ``agent.pyz`` (rebuilt only when a source file changed)."""
    return _built()[0]


def agent_hash() -> str:
    """sha256 hex of ``agent_bytes()``: what ``python3 agent.pyz hash`` and sha256sum print."""
    return _built()[1]


def agent_path(home: Path | None = None) -> Path:
    """``agent.pyz`` as a file under ``STEWARD_HOME/cache/agent/`` (for the built-in node).

    The name carries the hash, so a running build keeps its file while a newer one appears.
    """
    if home is None:
        from django.conf import settings

        home = Path(settings.STEWARD_HOME)
    data, digest = _built()
    directory = Path(home) / "cache" / "agent"
    path = directory / f"agent-{digest[:16]}.pyz"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, path)  # atomic: readers never see half a file
    return path
