"""``agent.pyz run``: run one build script in its own process group and stream it back.

The spec arrives as a SPEC frame on stdin; output goes back as OUTPUT frames on stdout and the
last frame is EXIT (see ``protocol``). The script runs in a new session (so a new process
group) in the workspace. An ABORT frame, stdin closing, the spec's timeout, or a SIGTERM/SIGHUP
to the agent kills the whole tree: SIGTERM, then SIGKILL after ``kill_grace`` seconds. When the
script ends by itself, processes it left behind are killed the same way (like Jenkins'
ProcessTreeKiller), so no build leaves an orphan.

Which processes are "the tree": every member of the script's process group, and on Linux every
descendant of the agent. On Linux the agent makes itself a child subreaper, so orphaned
grandchildren (``cmd &`` whose parent exited, double forks, even ``setsid`` daemons) are
re-parented to the agent and still found through /proc. Limits: without /proc (not Linux) a
process that calls ``setsid``/``setpgid`` leaves the group and escapes; a process handed to
another service (``systemd-run``, ``at``, a container daemon) escapes everywhere; if the agent
itself is SIGKILLed nothing is cleaned up (the controller can still ``kill -- -PGID`` with the
pgid from the STARTED frame).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

from . import protocol

POLL_SECONDS = 0.05
SCAN_SECONDS = 0.02  # at most this often, look for the processes still alive while killing
# After the tree is gone, how long to wait for the output pipe to reach EOF (a process we
# cannot see may still hold it open).
EOF_WAIT_SECONDS = 1.0
# After SIGKILL, how long to wait for processes to disappear before giving up (a process in
# uninterruptible sleep, or a zombie nobody reaps).
KILL_WAIT_SECONDS = 5.0
_HAVE_PROC = os.path.exists("/proc/self/stat")
_PR_SET_CHILD_SUBREAPER = 36


class SpecError(Exception):
    """The spec cannot be run; the message goes back in an ERROR frame."""


def _set_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _proc_table() -> dict:
    """``{pid: (ppid, pgid, state)}`` of every process, read from /proc."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as fp:
                data = fp.read()
        except OSError:
            continue  # exited meanwhile
        # The command name is in parentheses and may itself contain ") ".
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            table[int(name)] = (int(fields[1]), int(fields[2]), fields[0].decode("ascii"))
        except (IndexError, ValueError):
            continue
    return table


def _parse_spec(spec: dict) -> dict:
    workspace = spec.get("workspace")
    if not isinstance(workspace, str) or not workspace:
        raise SpecError("The spec has no workspace.")
    script = spec.get("script")
    if not isinstance(script, str):
        raise SpecError("The spec has no script.")
    shell = spec.get("shell")
    if shell is None:
        shell = list(protocol.DEFAULT_SHELL)
    elif isinstance(shell, str):
        shell = shell.split()
    if not shell or not all(isinstance(part, str) and part for part in shell):
        raise SpecError("The shell must be a non-empty list of strings.")
    env = spec.get("env") or {}
    if not isinstance(env, dict):
        raise SpecError("The environment must be an object.")
    timeout = spec.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise SpecError("The timeout must be a positive number of seconds.")
    grace = spec.get("kill_grace")
    if grace is None:
        grace = protocol.DEFAULT_KILL_GRACE
    if not isinstance(grace, (int, float)) or grace < 0:
        raise SpecError("kill_grace must be a non-negative number of seconds.")
    return {
        "workspace": os.path.abspath(workspace),
        "script": script,
        "shell": shell,
        "env": env,
        "timeout": timeout,
        "kill_grace": float(grace),
    }


def _command(shell: list, script: str, path: str) -> list:
    """Like Jenkins' Shell step: a script starting with ``#!`` names its own interpreter."""
    if script.startswith("#!"):
        first_line = script[2:].split("\n", 1)[0].strip()
        if first_line:
            return first_line.split() + [path]
    return list(shell) + [path]


class Runner:
    """One ``run``: reads frames from ``stdin_fd`` and writes frames to ``stdout_fd``."""

    def __init__(self, stdin_fd: int, stdout_fd: int) -> None:
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.decoder = protocol.FrameDecoder()
        self.output_dead = False  # the controller no longer reads our stdout
        self.agent_signal = None
        self.subreaper = False
        self.leader = None  # pid of the script's process (= its pgid)
        self.leader_status = None
        self.script_path = None
        self.tmp_dir = None

    # -- output ---------------------------------------------------------------------------
    def _send(self, frame: bytes) -> None:
        """Write one encoded frame; after EPIPE (the controller is gone) writes are dropped."""
        if self.output_dead:
            return
        view = memoryview(frame)
        try:
            while view:
                # os.write may write part of it when a signal (SIGCHLD) interrupts it.
                view = view[os.write(self.stdout_fd, view) :]
        except OSError:
            self.output_dead = True

    # -- the spec -------------------------------------------------------------------------
    def _read_spec(self):
        while True:
            try:
                data = os.read(self.stdin_fd, protocol.READ_SIZE)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            if not data:
                return None
            frames = self.decoder.feed(data)
            if frames:
                first = frames[0]
                if first.type != protocol.SPEC:
                    raise protocol.ProtocolError("expected SPEC, got %s" % first.name)
                # Control frames sent right behind the spec are handled by the main loop.
                self._early = frames[1:]
                return first.json()

    def _prepare(self, spec: dict) -> list:
        workspace = spec["workspace"]
        try:
            os.makedirs(workspace, exist_ok=True)
        except OSError as exc:
            raise SpecError(
                "Cannot create the workspace %s: %s" % (workspace, exc.strerror or exc)
            ) from None
        if not os.path.isdir(workspace):
            raise SpecError("The workspace %s is not a directory." % workspace)
        # Jenkins keeps step scripts beside the workspace in "<workspace>@tmp".
        self.tmp_dir = workspace + "@tmp"
        try:
            os.makedirs(self.tmp_dir, exist_ok=True)
            fd, self.script_path = tempfile.mkstemp(
                prefix="steward", suffix=".sh", dir=self.tmp_dir
            )
            with os.fdopen(fd, "wb") as fp:
                fp.write(spec["script"].encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise SpecError(
                "Cannot write the script to %s: %s" % (self.tmp_dir, exc.strerror or exc)
            ) from None
        return _command(spec["shell"], spec["script"], self.script_path)

    def _environment(self, overrides: dict) -> dict:
        env = dict(os.environ)
        for key, value in overrides.items():
            if value is None:
                env.pop(str(key), None)
            else:
                env[str(key)] = str(value)
        return env

    def _cleanup(self) -> None:
        if self.script_path:
            try:
                os.unlink(self.script_path)
            except OSError:
                pass
        if self.tmp_dir:
            try:
                os.rmdir(self.tmp_dir)  # only when empty: the build may keep files there
            except OSError:
                pass

    # -- the process tree -----------------------------------------------------------------
    def _reap(self) -> None:
        """Collect every exited child (the script, and orphans re-parented to us)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.leader:
                self.leader_status = status

    def _tree(self) -> list:
        """Live pids of the build: its process group, plus (Linux) the agent's descendants."""
        if not _HAVE_PROC:
            try:
                os.killpg(self.leader, 0)
            except (ProcessLookupError, PermissionError):
                return []
            return [-self.leader]  # unknown members; signal the group
        table = _proc_table()
        children = {}
        for pid, (ppid, _pgid, _state) in table.items():
            children.setdefault(ppid, []).append(pid)
        found = set()
        stack = [os.getpid()]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        for pid, (_ppid, pgid, _state) in table.items():
            if pgid == self.leader:
                found.add(pid)
        found.discard(os.getpid())
        return [pid for pid in found if table.get(pid, (0, 0, "Z"))[2] not in ("Z", "X")]

    def _signal_tree(self, sig: int) -> int:
        pids = self._tree()
        try:
            os.killpg(self.leader, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in pids:
            if pid > 0:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        return len(pids)

    # -- signals --------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.agent_signal = signum

    def _install_signals(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        # A Python-level handler is needed for the wakeup fd to see SIGCHLD.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._wake_w = wake_w
        return wake_r

    # -- main -----------------------------------------------------------------------------
    def run(self) -> int:
        self._early = []
        try:
            raw = self._read_spec()
        except protocol.ProtocolError as exc:
            self._send(
                protocol.encode_json(protocol.ERROR, {"message": "Protocol error: %s" % exc})
            )
            return 2
        if raw is None:
            sys.stderr.write("steward agent: stdin closed before a spec arrived\n")
            return 2
        try:
            spec = _parse_spec(raw)
            argv = self._prepare(spec)
            env = self._environment(spec["env"])
            self.subreaper = _set_subreaper()
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=spec["workspace"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise SpecError(
                    "Cannot run program %s: %s" % (argv[0], exc.strerror or exc)
                ) from None
        except SpecError as exc:
            self._cleanup()
            self._send(protocol.encode_json(protocol.ERROR, {"message": str(exc)}))
            return 2
        try:
            return self._supervise(proc, spec)
        finally:
            self._cleanup()

    def _supervise(self, proc, spec: dict) -> int:
        self.leader = proc.pid
        wake_r = self._install_signals()
        self._send(
            protocol.encode_json(
                protocol.STARTED, {"pid": proc.pid, "pgid": proc.pid, "agent_pid": os.getpid()}
            )
        )
        out_fd = proc.stdout.fileno()
        selector = selectors.DefaultSelector()
        selector.register(out_fd, selectors.EVENT_READ, "output")
        selector.register(self.stdin_fd, selectors.EVENT_READ, "stdin")
        selector.register(wake_r, selectors.EVENT_READ, "wake")

        started = time.monotonic()
        deadline = started + spec["timeout"] if spec["timeout"] else None
        grace = spec["kill_grace"]
        reason = None  # why we kill the tree before the script ended (a REASONS value)
        leftovers = 0
        term_at = None  # when SIGTERM went to the tree
        kill_at = None  # when SIGKILL went to the tree
        tree_gone_at = None
        scanned_at = 0.0
        output_open = True

        for frame in self._early:
            reason = reason or self._control(frame)

        while True:
            self._reap()
            now = time.monotonic()
            if reason is None:
                if self.agent_signal is not None:
                    reason = protocol.AGENT_SIGNALLED
                elif deadline is not None and now >= deadline:
                    reason = protocol.TIMED_OUT
                elif self.output_dead:
                    reason = protocol.STDIN_CLOSED

            if term_at is None and (reason is not None or self.leader_status is not None):
                # Abort, or the script ended: whatever is left of the tree gets SIGTERM.
                count = self._signal_tree(signal.SIGTERM)
                if reason is None:
                    leftovers = count
                term_at = now
            if term_at is not None and tree_gone_at is None and now - scanned_at >= SCAN_SECONDS:
                # Scanning /proc costs a few ms: not on every read of a busy output pipe.
                scanned_at = now
                alive = self._tree()
                if not alive and self.leader_status is not None:
                    tree_gone_at = now
                elif kill_at is None and now - term_at >= grace:
                    self._signal_tree(signal.SIGKILL)
                    kill_at = now
                elif kill_at is not None:
                    # Keep killing: a process may have forked between scan and signal.
                    self._signal_tree(signal.SIGKILL)
                    if now - kill_at >= KILL_WAIT_SECONDS:
                        sys.stderr.write("steward agent: processes did not die: %r\n" % alive)
                        tree_gone_at = now
            if tree_gone_at is not None and (
                not output_open or now - tree_gone_at >= EOF_WAIT_SECONDS
            ):
                break

            for key, _events in selector.select(POLL_SECONDS):
                if key.data == "output":
                    data = os.read(out_fd, protocol.READ_SIZE)
                    if data:
                        self._send(protocol.encode(protocol.OUTPUT, data))
                    else:
                        selector.unregister(out_fd)
                        output_open = False
                elif key.data == "stdin":
                    try:
                        data = os.read(self.stdin_fd, protocol.READ_SIZE)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(self.stdin_fd)
                        reason = reason or (
                            protocol.STDIN_CLOSED if self.leader_status is None else None
                        )
                        continue
                    try:
                        frames = self.decoder.feed(data)
                    except protocol.ProtocolError as exc:
                        sys.stderr.write("steward agent: %s; aborting\n" % exc)
                        frames = [protocol.Frame(protocol.ABORT, b"")]
                    for frame in frames:
                        reason = reason or self._control(frame)
                else:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass

        selector.close()
        proc.stdout.close()
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(self._wake_w)
        code, sig = self._exit_status()
        proc.returncode = code  # reaped by us; keeps Popen from waiting again
        if reason is not None and self.leader_status is None:
            sys.stderr.write("steward agent: the script process could not be reaped\n")
        exit_record = {
            "code": code,
            "signal": sig,
            "reason": reason or protocol.EXITED,
            "leftovers": leftovers,
        }
        self._send(protocol.encode_json(protocol.EXIT, exit_record))
        return 0

    def _control(self, frame):
        if frame.type == protocol.ABORT:
            return protocol.ABORTED
        sys.stderr.write("steward agent: ignoring unexpected %s frame\n" % frame.name)
        return None

    def _exit_status(self):
        status = self.leader_status
        if status is None:
            return None, None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return 128 + sig, sig
        return os.WEXITSTATUS(status), None


def main() -> int:
    # Signals to a half-closed pipe must be errors we handle, not a silent death.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return Runner(0, 1).run()
