"""The agent program (``agent.pyz``), its archive, and its framed protocol, locally and over SSH."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from nodes import agent_package
from nodes.agent import protocol
from nodes.tests.sshd import pid_alive, run_command

SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
EXACT = ["/bin/sh", "-e"]  # no -x trace, for byte-exact output checks


def _python_versions() -> dict[str, tuple[int, int]]:
    """Every python3 interpreter on this machine, by real path, with its version."""
    candidates = set(glob.glob("/root/.pyenv/versions/*/bin/python3"))
    for directory in ("/usr/bin", "/usr/local/bin", "/opt/python/bin"):
        candidates |= set(glob.glob(f"{directory}/python3*"))
    found: dict[str, tuple[int, int]] = {}
    for path in sorted(candidates):
        real = os.path.realpath(path)
        if (
            real in found
            or not re.search(r"python3(\.\d+)?$", real)
            or not os.access(real, os.X_OK)
        ):
            continue
        try:
            out = subprocess.run(
                [real, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.split()
            found[real] = (int(out[0]), int(out[1]))
        except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
            continue
    return found


PYTHONS = _python_versions()
SUPPORTED = sorted((v, p) for p, v in PYTHONS.items() if v >= (3, 8))
OLDEST = SUPPORTED[0][1] if SUPPORTED else SYSTEM_PYTHON
TOO_OLD = sorted(p for p, v in PYTHONS.items() if v < (3, 8))


# -- helpers ----------------------------------------------------------------------------------


class LocalRun:
    """``python3 agent.pyz run`` as a local subprocess, driven through the protocol module."""

    def __init__(self, pyz: Path, spec: dict, python: str = SYSTEM_PYTHON) -> None:
        self.proc = subprocess.Popen(
            [python, str(pyz), "run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.writer = protocol.FrameWriter(self.proc.stdin)
        self.reader = protocol.FrameReader(self.proc.stdout)
        self.output = bytearray()
        self.frames: list[protocol.Frame] = []
        self.writer.send_spec(spec)

    def next(self) -> protocol.Frame | None:
        frame = self.reader.read()
        if frame is not None:
            self.frames.append(frame)
            if frame.type == protocol.OUTPUT:
                self.output += frame.payload
        return frame

    def started(self) -> dict:
        frame = self.next()
        assert frame is not None and frame.type == protocol.STARTED, frame
        return frame.json()

    def read_until(self, marker: bytes) -> None:
        while marker not in self.output:
            frame = self.next()
            assert frame is not None and frame.type == protocol.OUTPUT, (frame, self.output)

    def finish(self) -> dict:
        """Read to the EXIT frame; checks it is the last one and the agent exits 0."""
        while True:
            frame = self.next()
            assert frame is not None, f"no EXIT frame; stderr: {self.stderr()}"
            if frame.type == protocol.EXIT:
                break
            assert frame.type == protocol.OUTPUT, frame
        assert self.reader.read() is None
        assert self.proc.wait(timeout=10) == 0
        return frame.json()

    def stderr(self) -> str:
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def run_local(pyz: Path, spec: dict, python: str = SYSTEM_PYTHON) -> tuple[bytes, dict]:
    run = LocalRun(pyz, spec, python)
    try:
        run.started()
        result = run.finish()
        return bytes(run.output), result
    finally:
        run.close()


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                members.append(int(name))
    return members


def read_pids(workspace: Path, names: list[str]) -> dict[str, int]:
    return {name: int((workspace / f"{name}.pid").read_text()) for name in names}


def wait_gone(pids, timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        time.sleep(0.02)
    return alive


def kill_leftovers(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# A process tree that resists: a child and its grandchild ignore SIGTERM (SIG_IGN is inherited
# across exec), a background sleeper, an orphaned grandchild whose parent subshell exits, a
# process that left the group with setsid, and a daemon (setsid, then orphaned: only the
# agent being a child subreaper keeps it findable). The script itself traps TERM and keeps waiting
# (run without -e, so only SIGKILL ends it: exit 137).
STUBBORN_TREE = """\
sh -c 'trap "" TERM; sleep 300 & echo $! > stubborn_grandchild.pid; wait' &
echo $! > stubborn.pid
sleep 300 &
echo $! > sleeper.pid
( sleep 300 & echo $! > orphan.pid ) &
wait $!
setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' &
( setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & )
trap 'echo got TERM' TERM
for f in setsid daemon stubborn_grandchild; do
  while [ ! -s $f.pid ]; do sleep 0.01; done
done
echo ready
while :; do wait; sleep 0.05; done
"""
TREE_SHELL = ["/bin/sh"]
TREE_PIDS = ["stubborn", "stubborn_grandchild", "sleeper", "orphan", "setsid", "daemon"]


# -- the archive --------------------------------------------------------------------------------


def test_archive_is_reproducible_and_hash_is_sha256(tmp_path, agent_pyz):
    data = agent_package.agent_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    assert agent_package.agent_hash() == hashlib.sha256(data).hexdigest()
    assert agent_pyz.read_bytes() == data
    assert agent_pyz.name == f"agent-{agent_package.agent_hash()[:16]}.pyz"
    assert agent_package.agent_path(agent_pyz.parent.parent.parent) == agent_pyz

    # The same sources with other timestamps give the same bytes; other content does not.
    copy = tmp_path / "agent"
    shutil.copytree(
        agent_package.AGENT_SOURCE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert agent_package.build_archive(copy) == data
    (copy / "protocol.py").write_text((copy / "protocol.py").read_text() + "\n# changed\n")
    assert agent_package.build_archive(copy) != data

    with zipfile.ZipFile(agent_pyz) as zf:
        names = zf.namelist()
        assert names[0] == "__main__.py"
        assert "steward_agent/protocol.py" in names and "steward_agent/runner.py" in names
        assert not any("__pycache__" in n for n in names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_hash_command_matches_sha256sum(agent_pyz):
    printed = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "hash"], capture_output=True, text=True, check=True
    ).stdout
    sha256sum = subprocess.run(
        ["sha256sum", str(agent_pyz)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert printed == agent_package.agent_hash() + "\n"
    assert sha256sum == agent_package.agent_hash()


# -- hello and monitor ----------------------------------------------------------------------------


def _hello(pyz: Path, *args: str, python: str = SYSTEM_PYTHON, **env: str) -> dict:
    result = subprocess.run(
        [python, str(pyz), "hello", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("\n")  # ONE line
    return json.loads(result.stdout)


def test_hello(agent_pyz, tmp_path):
    before = time.time() * 1000
    info = _hello(agent_pyz, "--root", str(tmp_path), STEWARD_PROBE="value with spaces")
    after = time.time() * 1000
    assert info["agent_version"] == protocol.AGENT_VERSION
    assert info["protocol_version"] == protocol.PROTOCOL_VERSION == 1
    assert info["agent_hash"] == agent_package.agent_hash()
    system_version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert info["python"]["version"] == system_version
    assert info["python"]["implementation"] == "cpython"
    assert info["python"]["executable"] == SYSTEM_PYTHON
    uname = os.uname()
    assert info["os"] == {"name": "Linux", "release": uname.release, "version": uname.version}
    assert info["architecture"]["machine"] == uname.machine
    expected_arch = {"x86_64": "amd64", "aarch64": "aarch64"}.get(uname.machine, uname.machine)
    assert info["architecture"]["label"] == f"Linux ({expected_arch})"
    assert info["cpus"] == os.cpu_count()
    assert before <= info["clock_ms"] <= after
    assert info["hostname"] == socket.gethostname()
    assert info["user"] == "root"
    usage = shutil.disk_usage(tmp_path)
    assert info["disk"]["path"] == str(tmp_path) and info["disk"]["error"] is None
    assert info["disk"]["total"] == usage.total
    assert abs(info["disk"]["free"] - usage.free) < 256 * 1024 * 1024
    assert info["temp"]["error"] is None and info["temp"]["total"] > 0
    assert info["temp"]["path"] == tempfile.gettempdir()
    memory = info["memory"]
    assert set(memory) == {"total_physical", "available_physical", "total_swap", "available_swap"}
    assert all(isinstance(v, int) for v in memory.values())
    assert 0 < memory["available_physical"] <= memory["total_physical"]
    assert 0 <= memory["available_swap"] <= memory["total_swap"] or memory["total_swap"] == 0
    assert info["environment"]["STEWARD_PROBE"] == "value with spaces"


def test_hello_is_fast(agent_pyz, tmp_path):
    """Under 100 ms of CPU (wall time depends on how busy the machine is; CPU time hardly)."""
    cpu, wall = [], []
    for _ in range(5):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(agent_pyz), "hello", "--root", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall.append(time.perf_counter() - start)
        assert proc.returncode == 0
        cpu.append(usage.ru_utime + usage.ru_stime)
    assert min(cpu) < 0.1, cpu
    assert min(wall) < 0.5, wall


def test_hello_reports_a_missing_root(agent_pyz, tmp_path):
    missing = tmp_path / "not-created"
    info = _hello(agent_pyz, "--root", str(missing))
    assert not missing.exists()  # the controller creates it, not hello
    assert info["disk"]["free"] is None and info["disk"]["total"] is None
    assert str(missing) in info["disk"]["error"]


def test_hello_defaults_to_the_working_directory(agent_pyz, tmp_path):
    result = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "hello"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(result.stdout)
    assert info["cwd"] == info["disk"]["path"] == str(tmp_path)


def test_monitor(agent_pyz, tmp_path):
    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "monitor", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.count("\n") == 1
    sample = json.loads(result.stdout)
    assert set(sample) == {"clock_ms", "architecture", "disk", "temp", "memory"}
    assert abs(sample["clock_ms"] - time.time() * 1000) < 5000
    assert sample["disk"]["path"] == str(tmp_path) and sample["disk"]["free"] > 0
    assert sample["temp"]["free"] > 0
    assert sample["memory"]["total_physical"] > 0
    assert sample["architecture"]["label"].startswith("Linux (")

    as_file = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "monitor", "--root", str(tmp_path / "file")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "is a file not a directory" in json.loads(as_file.stdout)["disk"]["error"]


# -- python versions --------------------------------------------------------------------------


def test_runs_under_the_oldest_python3(agent_pyz, tmp_path):
    info = _hello(agent_pyz, "--root", str(tmp_path), python=OLDEST)
    assert info["python"]["executable"] == OLDEST
    if SUPPORTED:
        assert tuple(int(x) for x in info["python"]["version"].split(".")[:2]) == SUPPORTED[0][0]
    output, result = run_local(
        agent_pyz,
        protocol.make_spec(str(tmp_path / "ws"), "echo $((6 * 7))\nexit 4", shell=EXACT),
        python=OLDEST,
    )
    assert (output, result["code"]) == (b"42\n", 4)


@pytest.mark.parametrize("python", TOO_OLD)
def test_too_old_python_is_refused_clearly(agent_pyz, python):
    result = subprocess.run([python, str(agent_pyz), "hello"], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stdout == ""
    assert "needs Python 3.8 or later" in result.stderr


# -- run ----------------------------------------------------------------------------------------


def test_output_bytes_arrive_intact(agent_pyz, tmp_path):
    script = (
        "printf '\\377\\376\\000\\200abc\\n'\nprintf 'caf\\303\\251\\n' >&2\nprintf 'no newline'"
    )
    output, result = run_local(agent_pyz, protocol.make_spec(str(tmp_path), script, shell=EXACT))
    assert output == b"\xff\xfe\x00\x80abc\ncaf\xc3\xa9\nno newline"
    assert result == {"code": 0, "signal": None, "reason": "exited", "leftovers": 0}


def test_ten_megabytes_are_streamed(agent_pyz, tmp_path):
    size = 10 * 1024 * 1024
    script = f'head -c {size} /dev/urandom | tee "$PWD/sent.bin"\ntouch "$PWD/finished"'
    run = LocalRun(agent_pyz, protocol.make_spec(str(tmp_path), script, shell=EXACT))
    try:
        agent_pid = run.started()["agent_pid"]

        def rss_kib() -> int:
            status = Path(f"/proc/{agent_pid}/status").read_text()
            return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))

        first = run.next()
        assert first.type == protocol.OUTPUT
        baseline = rss_kib()
        # We stop reading: the agent must stop too (back-pressure), not buffer the rest.
        time.sleep(1.0)
        assert not (tmp_path / "finished").exists()
        assert len(run.output) < size
        peak = baseline
        while True:
            frame = run.next()
            if frame.type == protocol.EXIT:
                break
            assert frame.type == protocol.OUTPUT and 0 < len(frame.payload) <= 64 * 1024
            if len(run.frames) % 16 == 0:
                peak = max(peak, rss_kib())
        assert frame.json()["code"] == 0
        assert len(run.output) == size
        assert run.output == (tmp_path / "sent.bin").read_bytes()
        assert peak - baseline < 4 * 1024, (baseline, peak)  # KiB: far less than 10 MiB
    finally:
        run.close()


@pytest.mark.parametrize(
    ("script", "code", "sig"),
    [
        ("exit 0", 0, None),
        ("exit 1", 1, None),
        ("exit 137", 137, None),
        ("kill -KILL $$", 137, 9),
        ("kill -TERM $$", 143, 15),
    ],
)
def test_exit_codes(agent_pyz, tmp_path, script, code, sig):
    _, result = run_local(agent_pyz, protocol.make_spec(str(tmp_path), script))
    assert (result["code"], result["signal"], result["reason"]) == (code, sig, "exited")


def test_default_shell_is_sh_xe_like_jenkins(agent_pyz, tmp_path):
    output, result = run_local(
        agent_pyz, protocol.make_spec(str(tmp_path), "echo hi\nfalse\necho never")
    )
    assert output == b"+ echo hi\nhi\n+ false\n"
    assert result["code"] == 1


def test_shebang_line_picks_the_interpreter(agent_pyz, tmp_path):
    script = '#!/bin/bash -e\necho ${BASH_VERSION:+bash} "$0"'
    output, result = run_local(agent_pyz, protocol.make_spec(str(tmp_path / "ws"), script))
    line = output.decode().split()
    assert line[0] == "bash" and line[1].startswith(str(tmp_path / "ws@tmp") + "/steward")
    assert result["code"] == 0


def test_workspace_is_created_and_is_the_cwd_and_env_is_passed(agent_pyz, tmp_path):
    workspace = tmp_path / "jobs" / "my job" / "workspace"
    script = 'pwd\necho "$FOO|$MULTI|${HOME-unset}|$PATH"\ntouch built.txt'
    env = {"FOO": "bar", "MULTI": "a b\nc", "HOME": None}
    output, result = run_local(
        agent_pyz, protocol.make_spec(str(workspace), script, shell=EXACT, env=env)
    )
    assert output == f"{workspace}\nbar|a b\nc|unset|{os.environ['PATH']}\n".encode()
    assert (workspace / "built.txt").is_file()
    assert not Path(f"{workspace}@tmp").exists()  # the script file is cleaned up
    assert result["code"] == 0


def test_relative_workspace_is_under_the_agents_directory(agent_pyz, tmp_path):
    run = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "run"],
        input=protocol.encode_json(protocol.SPEC, protocol.make_spec("ws/a", "pwd", shell=EXACT)),
        capture_output=True,
        cwd=tmp_path,
        timeout=30,
    )
    frames = protocol.FrameDecoder().feed(run.stdout)
    # stdin is closed at once here, so the build may be cut short; the directory is made first.
    assert frames[0].type == protocol.STARTED
    assert (tmp_path / "ws" / "a").is_dir()


def test_spec_errors_come_back_as_error_frames(agent_pyz, tmp_path):
    (tmp_path / "file").write_text("")
    cases = [
        (protocol.make_spec(str(tmp_path / "file" / "ws"), "true"), "Cannot create the workspace"),
        (
            protocol.make_spec(str(tmp_path), "true", shell=["/nonexistent/sh"]),
            "Cannot run program",
        ),
        ({"script": "true"}, "no workspace"),
    ]
    for spec, message in cases:
        run = LocalRun(agent_pyz, spec)
        try:
            frame = run.next()
            assert frame.type == protocol.ERROR and message in frame.json()["message"]
            assert run.next() is None
            assert run.proc.wait(timeout=10) == 2
        finally:
            run.close()


def test_junk_before_the_spec_is_a_protocol_error(agent_pyz):
    run = subprocess.run(
        [SYSTEM_PYTHON, str(agent_pyz), "run"],
        input=b"Welcome to build-07!\n",
        capture_output=True,
        timeout=30,
    )
    frame = protocol.FrameReader(io.BytesIO(run.stdout)).read()
    assert frame.type == protocol.ERROR and "Protocol error" in frame.json()["message"]
    assert run.returncode == 2


def parent_pid(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[1])


def _start_tree(
    agent_pyz: Path, workspace: Path, python: str = SYSTEM_PYTHON
) -> tuple[LocalRun, dict, dict]:
    spec = protocol.make_spec(str(workspace), STUBBORN_TREE, shell=TREE_SHELL)
    run = LocalRun(agent_pyz, spec, python)
    started = run.started()
    run.read_until(b"ready\n")
    pids = read_pids(workspace, TREE_PIDS)
    assert all(pid_alive(pid) for pid in pids.values())
    assert started["pgid"] == started["pid"] and group_members(started["pgid"])
    # Orphans are re-parented to the agent (a child subreaper), not to init.
    assert parent_pid(pids["orphan"]) == parent_pid(pids["daemon"]) == started["agent_pid"]
    assert pids["daemon"] not in group_members(started["pgid"])
    return run, started, pids


@pytest.mark.parametrize("python", sorted({SYSTEM_PYTHON, OLDEST}))
def test_abort_kills_the_whole_tree_within_2_seconds(agent_pyz, tmp_path, python):
    run, started, pids = _start_tree(agent_pyz, tmp_path, python)
    try:
        begin = time.monotonic()
        run.writer.send_abort("Aborted by admin")
        result = run.finish()
        elapsed = time.monotonic() - begin
        assert result["reason"] == "aborted"
        assert (result["code"], result["signal"]) == (137, 9)  # it trapped TERM: killed
        assert elapsed < 2.0 + 0.5, elapsed
        assert b"got TERM" in run.output  # SIGTERM came first
        assert [p for p in pids.values() if pid_alive(p)] == []
        assert group_members(started["pgid"]) == []
        assert not pid_alive(started["agent_pid"])
    finally:
        kill_leftovers(pids.values())
        run.close()


def test_abort_of_a_polite_script_is_immediate(agent_pyz, tmp_path):
    run = LocalRun(agent_pyz, protocol.make_spec(str(tmp_path), "echo up\nexec sleep 300"))
    try:
        started = run.started()
        run.read_until(b"up\n")
        begin = time.monotonic()
        run.writer.send_abort()
        result = run.finish()
        assert time.monotonic() - begin < 0.5
        assert (result["code"], result["signal"], result["reason"]) == (143, 15, "aborted")
        assert group_members(started["pgid"]) == []
    finally:
        run.close()


def test_closing_stdin_kills_the_tree(agent_pyz, tmp_path):
    run, started, pids = _start_tree(agent_pyz, tmp_path)
    try:
        run.proc.stdin.close()  # the controller side went away
        result = run.finish()
        assert result["reason"] == "stdin-closed"
        assert wait_gone(pids.values(), timeout=0.5) == []
        assert group_members(started["pgid"]) == []
    finally:
        kill_leftovers(pids.values())
        run.close()


def test_controller_dying_kills_the_tree(agent_pyz, tmp_path):
    run, started, pids = _start_tree(agent_pyz, tmp_path)
    try:
        run.proc.stdin.close()
        run.proc.stdout.close()  # nobody reads the output any more either
        assert run.proc.wait(timeout=5) == 0
        assert wait_gone(pids.values(), timeout=0.5) == []
        assert group_members(started["pgid"]) == []
    finally:
        kill_leftovers(pids.values())
        run.close()


def test_sigterm_to_the_agent_kills_the_tree(agent_pyz, tmp_path):
    run, started, pids = _start_tree(agent_pyz, tmp_path)
    try:
        os.kill(started["agent_pid"], signal.SIGTERM)
        result = run.finish()
        assert result["reason"] == "agent-signal"
        assert wait_gone(pids.values(), timeout=0.5) == []
    finally:
        kill_leftovers(pids.values())
        run.close()


def test_timeout_kills_the_build(agent_pyz, tmp_path):
    begin = time.monotonic()
    _, result = run_local(agent_pyz, protocol.make_spec(str(tmp_path), "sleep 60", timeout=0.5))
    assert (result["code"], result["reason"]) == (143, "timeout")
    assert 0.5 <= time.monotonic() - begin < 2.0


def test_processes_left_behind_are_killed_when_the_script_ends(agent_pyz, tmp_path):
    script = "sleep 300 &\necho $! > bg.pid\nnohup sleep 301 >/dev/null 2>&1 &\necho $! > nohup.pid"
    begin = time.monotonic()
    output, result = run_local(agent_pyz, protocol.make_spec(str(tmp_path), script, shell=EXACT))
    assert time.monotonic() - begin < 1.5  # the pipe they hold open does not keep us waiting
    pids = read_pids(tmp_path, ["bg", "nohup"])
    try:
        assert (result["code"], result["reason"], result["leftovers"]) == (0, "exited", 2)
        assert wait_gone(pids.values(), timeout=0.5) == []
    finally:
        kill_leftovers(pids.values())


# -- the protocol module ------------------------------------------------------------------------


def test_frames_round_trip_in_any_chunking():
    frames = [
        protocol.Frame(protocol.SPEC, protocol.encode_json(protocol.SPEC, {"a": "é"})[5:]),
        protocol.Frame(protocol.OUTPUT, bytes(range(256)) * 300),
        protocol.Frame(protocol.OUTPUT, b""),
        protocol.Frame(protocol.EXIT, b'{"code":0}'),
    ]
    stream = b"".join(protocol.encode(f.type, f.payload) for f in frames)
    for size in (1, 7, 4096, len(stream)):
        decoder = protocol.FrameDecoder()
        got = []
        for i in range(0, len(stream), size):
            got += decoder.feed(stream[i : i + size])
        assert got == frames and decoder.pending == 0
    assert list(protocol.FrameReader(io.BytesIO(stream))) == frames
    assert frames[0].json() == {"a": "é"}


def test_protocol_errors():
    with pytest.raises(protocol.ProtocolError, match="unknown frame type"):
        protocol.FrameDecoder().feed(b"Last login: yesterday\n")
    with pytest.raises(protocol.ProtocolError, match="over the"):
        protocol.FrameDecoder().feed(bytes([protocol.OUTPUT]) + (2**31).to_bytes(4, "big"))
    truncated = protocol.encode(protocol.OUTPUT, b"abcdef")[:-2]
    with pytest.raises(protocol.ProtocolError, match="ended inside"):
        protocol.FrameReader(io.BytesIO(truncated)).read()
    with pytest.raises(protocol.ProtocolError, match="not valid JSON"):
        protocol.Frame(protocol.EXIT, b"{nope").json()
    with pytest.raises(ValueError):
        protocol.encode(0x00, b"")


# -- over SSH -----------------------------------------------------------------------------------


def _exec_agent(client, root: Path, args: str):
    channel = client.get_transport().open_session(timeout=10)
    channel.settimeout(30)
    channel.exec_command(f'cd "{root}" && python3 agent.pyz {args}')
    return channel


def test_agent_over_ssh(sshd, client_key, remote_root, agent_user):
    with sshd.client(key=client_key) as client:
        # Copy agent.pyz over SFTP into a new remote root.
        with client.open_sftp() as sftp:
            parent = str(remote_root.parent)
            try:
                sftp.stat(parent)
            except FileNotFoundError:
                sftp.mkdir(parent, 0o755)
            sftp.mkdir(str(remote_root), 0o700)
            sftp.putfo(io.BytesIO(agent_package.agent_bytes()), f"{remote_root}/agent.pyz")
        status, out, _ = run_command(client, f'sha256sum "{remote_root}/agent.pyz"')
        assert status == 0 and out.split()[0].decode() == agent_package.agent_hash()
        status, out, _ = run_command(client, f'cd "{remote_root}" && python3 agent.pyz hash')
        assert (status, out.decode().strip()) == (0, agent_package.agent_hash())

        # hello
        status, out, err = run_command(client, f'cd "{remote_root}" && python3 agent.pyz hello')
        assert status == 0, err
        info = json.loads(out)
        assert info["user"] == agent_user.name
        assert info["disk"]["path"] == str(remote_root) and info["disk"]["error"] is None
        assert info["agent_hash"] == agent_package.agent_hash()

        # A small build over the framed protocol on an exec channel.
        channel = _exec_agent(client, remote_root, "run")
        writer = protocol.FrameWriter(channel.makefile("wb"))
        reader = protocol.FrameReader(channel.makefile("rb"))
        writer.send_spec(
            protocol.make_spec("workspace/job1", "echo built by $(id -un)\nprintf '\\377\\n'")
        )
        frames = list(reader)
        assert [f.type for f in frames][0] == protocol.STARTED
        assert frames[-1].type == protocol.EXIT and frames[-1].json()["code"] == 0
        output = b"".join(f.payload for f in frames if f.type == protocol.OUTPUT)
        assert (
            output
            == b"+ id -un\n+ echo built by steward-agent\nbuilt by steward-agent\n+ printf \\377\\n\n\xff\n"
        )
        assert channel.recv_exit_status() == 0
        workspace = remote_root / "workspace" / "job1"
        assert workspace.is_dir() and workspace.stat().st_uid == agent_user.uid
        channel.close()

        # Abort over the channel: the remote tree is gone.
        channel = _exec_agent(client, remote_root, "run")
        writer = protocol.FrameWriter(channel.makefile("wb"))
        reader = protocol.FrameReader(channel.makefile("rb"))
        writer.send_spec(protocol.make_spec("workspace/job2", STUBBORN_TREE, shell=TREE_SHELL))
        started = reader.read().json()
        output = b""
        while b"ready\n" not in output:
            output += reader.read().payload
        pids = read_pids(remote_root / "workspace" / "job2", TREE_PIDS)
        try:
            begin = time.monotonic()
            writer.send_abort()
            frames = list(reader)
            assert time.monotonic() - begin < 2.5
            assert frames[-1].type == protocol.EXIT
            assert frames[-1].json()["reason"] == "aborted"
            assert frames[-1].json()["code"] == 137
            assert [p for p in pids.values() if pid_alive(p)] == []
            assert group_members(started["pgid"]) == []
            assert channel.recv_exit_status() == 0
        finally:
            kill_leftovers(pids.values())
            channel.close()

        # Closing the channel (the controller side died) also kills the remote tree.
        channel = _exec_agent(client, remote_root, "run")
        writer = protocol.FrameWriter(channel.makefile("wb"))
        reader = protocol.FrameReader(channel.makefile("rb"))
        writer.send_spec(protocol.make_spec("workspace/job3", STUBBORN_TREE, shell=TREE_SHELL))
        started = reader.read().json()
        output = b""
        while b"ready\n" not in output:
            output += reader.read().payload
        pids = read_pids(remote_root / "workspace" / "job3", TREE_PIDS)
        try:
            channel.close()
            assert wait_gone([*pids.values(), started["agent_pid"]], timeout=4) == []
            assert group_members(started["pgid"]) == []
        finally:
            kill_leftovers(pids.values())
