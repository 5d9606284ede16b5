"""Benchmark: one monitoring sweep of 100 SSH nodes (nodes.monitors.run_sweep).

One real sshd on loopback (nodes/tests/sshd.py; needs root, like the tests), 100 Node rows
pointing at it, all launched for real (SSH launcher, key credential) by a real Celery worker and
connected; then sweeps over the cached connections: the agent's ``monitor`` on every node.
Baseline: a sweep of 1 node, in the same run. Target: 100 nodes within 10 s.

    .venv/bin/python bench/monitor_sweep.py [--nodes 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import cleanup, machine, print_table, setup_django, summary, timed


def make_nodes(count: int, server, client_key, roots: Path) -> list:
    from credentials import services as credentials
    from credentials.forms import CredentialInput
    from nodes.models import Node

    credentials.create_credential(
        CredentialInput(
            kind="sshUserPrivateKey",
            scope="SYSTEM",
            credential_id="bench-key",
            description="benchmark agent login",
            username=server.username,
            secrets={"private_key": client_key.private_text, "passphrase": ""},
        )
    )
    return [
        Node.objects.create(
            name=f"agent-{i:03d}",
            remote_fs=str(roots / f"agent-{i:03d}"),
            launcher="ssh",
            retention=Node.Retention.DEMAND,  # the retention sweep stays out of the way
            launcher_config={
                "host": "127.0.0.1",
                "port": server.port,
                "credentials_id": "bench-key",
                "host_key_strategy": "non_verifying",
                "max_retries": 2,
                "retry_wait": 1,
                "launch_timeout": 60,
            },
        )
        for i in range(count)
    ]


def launch_all(nodes: list, timeout: float = 600.0) -> float:
    """Launch every node through the real path (request → Celery worker → SSH launcher) and
    wait until each is online and has had its first monitor run."""
    from console.testing import InProcessWorker
    from nodes import services
    from nodes.models import Node

    worker = InProcessWorker(concurrency=8).start()
    started = time.perf_counter()
    try:
        for node in nodes:
            services.request_launch(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = list(Node.objects.filter(pk__in=[n.pk for n in nodes]))
            failed = [n for n in rows if n.connection == Node.Connection.FAILED]
            if failed:
                raise RuntimeError(f"{failed[0].name}: {failed[0].connection_cause}")
            ready = [
                n
                for n in rows
                if n.connection == Node.Connection.CONNECTED and n.monitor_data.get("response")
            ]
            if len(ready) == len(nodes):
                return time.perf_counter() - started
            time.sleep(0.2)
        raise RuntimeError(f"only {len(ready)} of {len(nodes)} nodes came online")
    finally:
        worker.stop()


def sweep_stats(nodes: list, runs: int) -> dict:
    from nodes import monitors
    from nodes.models import Node

    walls, outcomes = [], []
    for _ in range(runs):
        fresh = list(Node.objects.filter(pk__in=[n.pk for n in nodes]))
        wall, outcome = timed(lambda fresh=fresh: monitors.run_sweep(fresh))
        walls.append(wall)
        outcomes.append(outcome)
    responses = [
        node.monitor_data["response"]["samples"][-1]
        for node in Node.objects.filter(pk__in=[n.pk for n in nodes])
    ]
    stats = summary(walls)
    bad = [o for o in outcomes if o.get("ok", 0) != len(nodes)]
    return {
        **{key: value for key, value in stats.items()},
        "response_ms": statistics.median(r for r in responses if r is not None),
        "outcomes": "all ok" if not bad else str(bad[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    home = setup_django("monitor-sweep")
    from nodes.tests.sshd import AGENT_HOME, ClientKey, SshServer

    keys = Path(tempfile.mkdtemp(prefix="steward-bench-keys-"))
    client_key = ClientKey.generate(keys, "id_ed25519")
    server = SshServer(authorized_keys=[client_key.public_line]).start()
    roots = AGENT_HOME / "bench-roots" / uuid.uuid4().hex[:8]
    try:
        from nodes import monitors
        from nodes.connections import pool

        nodes = make_nodes(args.nodes, server, client_key, roots)
        seconds = launch_all(nodes)
        print(f"launched {len(nodes)} SSH agents on 127.0.0.1:{server.port} in {seconds:.1f} s")

        rows = []
        baseline = sweep_stats(nodes[:1], args.runs)
        rows.append({"case": "baseline: 1 node", **baseline})
        full = sweep_stats(nodes, args.runs)
        full["ratio"] = f"{full['median'] / baseline['median']:.1f}x"
        rows.append({"case": f"{len(nodes)} nodes ({monitors.SWEEP_THREADS} threads)", **full})
        default_threads = monitors.SWEEP_THREADS
        for threads in (8, 16, 64):
            monitors.SWEEP_THREADS = threads
            stats = sweep_stats(nodes, max(3, args.runs // 2))
            stats["ratio"] = f"{stats['median'] / baseline['median']:.1f}x"
            rows.append({"case": f"{len(nodes)} nodes ({threads} threads)", **stats})
        monitors.SWEEP_THREADS = default_threads

        # The whole task as beat runs it: claim, read the nodes, sweep.
        wall, outcome = timed(lambda: monitors.monitor_sweep(force=True))
        rows.append(
            {
                "case": "monitor_sweep(force=True) task body",
                "median": wall,
                "outcomes": "all ok" if outcome.get("ok") == len(nodes) else str(outcome),
            }
        )

        print(f"\nMonitor sweep over SSH ({machine()}; {args.runs} runs)")
        print_table(
            "",
            rows,
            [
                ("case", "case"),
                ("median", "median ms"),
                ("min", "min ms"),
                ("max", "max ms"),
                ("ratio", "vs baseline"),
                ("response_ms", "median response ms"),
                ("outcomes", "outcomes"),
            ],
        )
        ok = full["median"] < 10_000
        print(
            f"\n{'PASS' if ok else 'FAIL'}: {len(nodes)} nodes in {full['median'] / 1000:.2f} s "
            f"(median; target < 10 s)"
        )
        return 0 if ok else 1
    finally:
        from nodes.connections import pool

        pool.close_all()
        server.cleanup()
        shutil.rmtree(roots, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)
        cleanup(home)


if __name__ == "__main__":
    sys.exit(main())
