"""Benchmark: the Nodes list (/computer/) with 1,000 nodes and their monitor data.

Server time of one GET through Django's test client (middleware, view, template) and its query
count, median of several runs; baseline: the empty list (only the built-in node) in the same
run. Target: under 300 ms with 1,000 nodes.

    .venv/bin/python bench/nodes_list.py [--nodes 1000] [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from _common import cleanup, machine, measure_wall_and_cpu, print_table, setup_django, summary


def real_sample() -> dict:
    """One real sample from the agent on this machine, as the monitors store it."""
    from nodes import monitors, services
    from nodes.connections import pool

    node = services.ensure_builtin_node()
    connection = pool.get(node)
    code, out, _ = connection.run_agent(["monitor", "--root", node.remote_fs], timeout=30)
    assert code == 0, out
    report = json.loads(out.decode().strip().splitlines()[-1])
    stamp = "2026-01-01T00:00:00+00:00"
    sample = monitors.Sample(report=report, response_ms=42, clock_diff_ms=12)
    data = monitors._entries_from(sample, stamp)
    data["response"] = {"samples": [40, 41, 42, 43, 44], "timeouts": 0, "at": stamp}
    data["offline_monitor"] = None
    return data


def fill(count: int, template: dict) -> None:
    """``count`` SSH agents with labels, some offline by a monitor or a user, all with data."""
    from django.utils import timezone

    from nodes.models import Node

    rng = random.Random(7)
    now = timezone.now()
    stamp = now.isoformat()
    nodes = []
    for i in range(count):
        data = json.loads(json.dumps(template))
        for key in ("disk", "temp", "swap", "clock", "architecture", "response"):
            data[key]["at"] = stamp
        data["disk"]["free"] = rng.randint(1, 400) * 2**30
        data["temp"]["free"] = rng.randint(1, 400) * 2**30
        data["clock"]["diff_ms"] = rng.randint(-8000, 8000)
        data["response"]["samples"] = [rng.randint(5, 300) for _ in range(5)]
        state = i % 20
        nodes.append(
            Node(
                name=f"agent-{i:04d}",
                description=f"build agent {i}",
                num_executors=rng.randint(1, 8),
                remote_fs=f"/srv/agent-{i:04d}",
                label_string=" ".join(
                    ["linux", f"rack{i % 10}", rng.choice(["amd64", "arm64"]), f"pool-{i % 7}"]
                ),
                launcher="ssh",
                launcher_config={"host": f"10.0.{i // 250}.{i % 250}", "credentials_id": "k"},
                connection=Node.Connection.CONNECTED if state else Node.Connection.FAILED,
                connection_cause="Agent successfully connected and online"
                if state
                else "Connection refused",
                offline=Node.Offline.MONITOR
                if state == 1
                else Node.Offline.USER
                if state == 2
                else "",
                offline_message="Disk space is below threshold of 1.00 GiB." if state == 1 else "",
                monitor_data=data,
                monitor_at=now,
                connected_at=now,
            )
        )
    Node.objects.bulk_create(nodes, batch_size=500)


def request_stats(client, url: str, runs: int, htmx: bool = False) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get():
        response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
        assert response.status_code == 200, (url, response.status_code)
        return response

    walls, cpus = measure_wall_and_cpu(get, runs, warmup=2)
    with CaptureQueriesContext(connection) as queries:
        response = get()
    return {
        **summary(walls),
        "cpu": summary(cpus)["median"],
        "queries": len(queries),
        "kib": len(response.content) / 1024,
        "rows": response.content.count(b"<tr") - 1,
    }


def pure_cells_ms(runs: int) -> float:
    """What the monitors add: the cells of every node, without queries or templates."""
    from nodes import monitors
    from nodes.models import MonitorSettings, Node

    nodes = list(Node.objects.all())
    settings = MonitorSettings.load()

    def cells():
        for node in nodes:
            monitors.monitor_columns(node, settings)
        monitors.data_obtained(nodes)

    walls, cpus = measure_wall_and_cpu(cells, runs)
    return summary(cpus)["median"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    home = setup_django("nodes-list")
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from nodes import services

        user = get_user_model().objects.create_superuser("admin", password="bench-password-1")
        client = Client()
        client.force_login(user)
        services.ensure_builtin_node()

        scenarios = [
            ("/computer/", "default page (50 rows)"),
            ("/computer/?per_page=250", "250 rows"),
            ("/computer/?sort=-disk&per_page=250", "250 rows, sorted by free disk"),
            ("/computer/?state=monitor", "offline by a monitor"),
            ("/computer/?label=rack3", "label filter"),
            ("/computer/?page=20", "page 20"),
            ("/computer/", "htmx refresh of the table (default page)"),
        ]
        rows = []
        baseline = request_stats(client, "/computer/", args.runs)
        rows.append({"case": "baseline: empty list (built-in node only)", **baseline})

        started = time.perf_counter()
        fill(args.nodes, real_sample())
        print(f"created {args.nodes} nodes in {time.perf_counter() - started:.1f} s")
        for url, case in scenarios:
            stats = request_stats(client, url, args.runs, htmx=case.startswith("htmx"))
            stats["ratio"] = f"{stats['median'] / baseline['median']:.2f}x"
            stats["cpu_ratio"] = f"{stats['cpu'] / baseline['cpu']:.2f}x"
            rows.append({"case": f"{args.nodes} nodes: {case}", "url": url, **stats})

        print(f"\nNodes list server time ({machine()}; {args.runs} runs each, ms)")
        print_table(
            "",
            rows,
            [
                ("case", "case"),
                ("median", "median"),
                ("p90", "p90"),
                ("max", "max"),
                ("ratio", "vs baseline"),
                ("cpu", "CPU median"),
                ("cpu_ratio", "CPU vs baseline"),
                ("queries", "queries"),
                ("rows", "rows"),
                ("kib", "KiB"),
            ],
        )
        columns_ms = pure_cells_ms(args.runs)
        print(
            f"\nnodes.monitors.monitor_columns + data_obtained for all {args.nodes} nodes "
            f"(no template): median {columns_ms:.1f} ms"
        )
        default = rows[1]
        ok = default["median"] < 300
        print(
            f"\n{'PASS' if ok else 'FAIL'}: the Nodes list as opened (/computer/, "
            f"{args.nodes} nodes): median {default['median']:.1f} ms wall, "
            f"{default['cpu']:.1f} ms CPU, {default['queries']} queries (target < 300 ms)"
        )
        return 0 if ok else 1
    finally:
        from nodes.connections import pool

        pool.close_all()
        cleanup(home)


if __name__ == "__main__":
    sys.exit(main())
