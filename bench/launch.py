"""Benchmark: launching an SSH agent on loopback, cold (agent.pyz copied) and warm (its hash
matches, no copy).

The launch task's body (nodes.tasks.launch_agent: SSH connect with TCP_NODELAY, host key,
authentication with a key credential, junk check, Python check, SFTP remote root and agent
hash, copy if needed, ``agent.pyz hello``, the node's row and its agent log) against a real
sshd (nodes/tests/sshd.py; needs root), and the launcher alone (no database, no log).
Baseline, same run: a bare paramiko connect + key authentication + exec of ``true``.
Targets: cold under 1 s, warm under 300 ms.

    .venv/bin/python bench/launch.py [--runs 7]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paramiko
from _common import cleanup, machine, print_table, setup_django, summary, timed


class TimingLog:
    """A launch log that keeps only when each line came (to time the launcher on its own and
    see which step takes the time)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, str]] = [(time.perf_counter(), "start")]

    def line(self, text: str) -> None:
        self.marks.append((time.perf_counter(), text))

    def raw(self, text: str) -> None:
        self.marks.append((time.perf_counter(), text))

    def close(self, complete: bool = True) -> None:
        pass

    def steps(self) -> list[tuple[str, float]]:
        """(the line that opened a step, ms until the next line)."""
        out = []
        for (t0, text), (t1, _) in zip(self.marks, self.marks[1:], strict=False):
            label = re.sub(r"[0-9a-f]{16,}|\d+", "#", text.splitlines()[0])[:60]
            out.append((label, (t1 - t0) * 1000))
        return out


def bare_paramiko(server, client_key) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        transport.auth_publickey(server.username, client_key.pkey())
        channel = transport.open_session(timeout=10)
        channel.exec_command("true")
        assert channel.recv_exit_status() == 0
        channel.close()
    finally:
        transport.close()


def make_node(server, roots: Path):
    from nodes.models import Node

    return Node.objects.create(
        name="loopback",
        remote_fs=str(roots / "warm"),
        launcher="ssh",
        retention=Node.Retention.DEMAND,
        launcher_config={
            "host": "127.0.0.1",
            "port": server.port,
            "credentials_id": "bench-key",
            "host_key_strategy": "non_verifying",
            "max_retries": 0,
            "launch_timeout": 30,
        },
    )


def launch_task(node) -> float:
    """Milliseconds of one launch through the task body, then a disconnect."""
    from nodes import services
    from nodes.tasks import launch_agent

    number = services.request_launch(node)
    wall, result = timed(lambda: launch_agent(node.pk, number, 1))
    assert result == "online", result
    node.refresh_from_db()
    services.disconnect(node)
    node.refresh_from_db()
    return wall


def launcher_only(node) -> tuple[float, TimingLog]:
    from nodes.launchers import launcher_for

    launcher = launcher_for(node)
    log = TimingLog()
    wall, result = timed(lambda: launcher.launch(node, log, lambda: False))
    log.line("(done)")
    result.connection.close()
    return wall, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    home = setup_django("launch")
    from nodes.tests.sshd import AGENT_HOME, ClientKey, SshServer

    keys = Path(tempfile.mkdtemp(prefix="steward-bench-keys-"))
    client_key = ClientKey.generate(keys, "id_ed25519")
    server = SshServer(authorized_keys=[client_key.public_line]).start()
    roots = AGENT_HOME / "bench-roots" / uuid.uuid4().hex[:8]
    try:
        from credentials import services as credentials
        from credentials.forms import CredentialInput
        from nodes import agent_package

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
        agent_package.agent_bytes()  # built once, as in a running controller
        node = make_node(server, roots)

        def cold_root() -> None:
            node.remote_fs = str(roots / f"cold-{uuid.uuid4().hex[:8]}")
            node.save(update_fields=["remote_fs"])

        def warm_root() -> None:
            node.remote_fs = str(roots / "warm")
            node.save(update_fields=["remote_fs"])

        results: dict[str, list[float]] = {
            key: [] for key in ("bare", "cold", "warm", "lcold", "lwarm")
        }
        step_times: dict[str, list[float]] = {}
        # Warm-up: connection code paths, and the warm root gets its agent.pyz.
        bare_paramiko(server, client_key)
        warm_root()
        launch_task(node)
        # Interleaved, so a change of machine load touches every case alike.
        for _ in range(args.runs):
            results["bare"].append(timed(lambda: bare_paramiko(server, client_key))[0])
            cold_root()
            results["cold"].append(launch_task(node))
            warm_root()
            results["warm"].append(launch_task(node))
            cold_root()
            results["lcold"].append(launcher_only(node)[0])
            warm_root()
            wall, log = launcher_only(node)
            results["lwarm"].append(wall)
            for label, ms in log.steps():
                step_times.setdefault(label, []).append(ms)

        size_kib = len(agent_package.agent_bytes()) / 1024
        base = summary(results["bare"])["median"]
        cases = [
            ("bare", "baseline: paramiko connect + auth + exec `true`", None),
            ("cold", f"launch task, cold (copies {size_kib:.0f} KiB agent.pyz)", 1000),
            ("warm", "launch task, warm (hash matches)", 300),
            ("lcold", "SSH launcher alone, cold", None),
            ("lwarm", "SSH launcher alone, warm", None),
        ]
        rows = []
        for key, case, target in cases:
            stats = summary(results[key])
            row = {"case": case, **stats}
            if key != "bare":
                row["ratio"] = f"{stats['median'] / base:.1f}x"
            if target:
                row["target"] = f"< {target} ms"
            rows.append(row)

        print(f"\nSSH launch on loopback ({machine()}; {args.runs} runs, ms)")
        print_table(
            "",
            rows,
            [
                ("case", "case"),
                ("median", "median"),
                ("min", "min"),
                ("p90", "p90"),
                ("max", "max"),
                ("ratio", "vs baseline"),
                ("target", "target"),
            ],
        )
        print_table(
            "Where a warm launch spends its time (SSH launcher alone; median ms per step)",
            [
                {"step": label, "median": summary(times)["median"]}
                for label, times in step_times.items()
                if len(times) == args.runs
            ],
            [("step", "step (the log line that starts it)"), ("median", "median ms")],
        )
        cold = summary(results["cold"])["median"]
        warm = summary(results["warm"])["median"]
        ok = cold < 1000 and warm < 300
        print(
            f"\n{'PASS' if ok else 'FAIL'}: cold {cold:.0f} ms (target < 1000), "
            f"warm {warm:.0f} ms (target < 300)"
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
