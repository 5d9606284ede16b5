"""Connections to agents, cached per node in each process (one per node per worker process).

An ``AgentConnection`` runs the agent program on its node: over an SSH exec channel (many
channels on one cached transport, capped below sshd's MaxSessions 10), or as a local process
(the built-in node and the command launcher). Everything above this module — launches,
monitors, builds — uses the same two calls: ``run_agent`` for short commands and ``open_agent``
for long ones with streaming.
"""

from __future__ import annotations

import select
import subprocess
import threading
import time
from abc import ABC, abstractmethod

import paramiko

MAX_CHANNELS_PER_CONNECTION = 8


class AgentError(Exception):
    """The agent could not be reached or answered badly; the message names the cause."""


class AgentProcess(ABC):
    """A running agent command: write its stdin, read its stdout, get its exit status."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close_stdin(self) -> None: ...

    @abstractmethod
    def read(self, size: int = 65536, timeout: float | None = None) -> bytes | None:
        """Bytes of stdout; b"" at EOF; None if nothing arrived within ``timeout``."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def read_stderr(self) -> bytes: ...


class ChannelProcess(AgentProcess):
    def __init__(self, channel: paramiko.Channel, release) -> None:
        self.channel = channel
        self._release = release
        self._closed = False

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)

    def close_stdin(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError):
            pass

    def read(self, size: int = 65536, timeout: float | None = None) -> bytes | None:
        if timeout is not None and not self.channel.recv_ready() and not self.channel.eof_received:
            ready, _, _ = select.select([self.channel], [], [], timeout)
            if not ready and not self.channel.recv_ready():
                return None
        try:
            return self.channel.recv(size)
        except OSError:
            return b""

    def read_stderr(self) -> bytes:
        out = bytearray()
        while self.channel.recv_stderr_ready():
            out += self.channel.recv_stderr(65536)
        return bytes(out)

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        return self.channel.recv_exit_status()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.channel.close()
            finally:
                self._release()


class LocalProcess(AgentProcess):
    def __init__(self, argv: list[str], cwd: str | None = None) -> None:
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
            )
        except OSError as exc:
            raise AgentError(f"Cannot run {argv[0]}: {exc.strerror}") from exc
        self._stderr = bytearray()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self._stderr += chunk

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def read(self, size: int = 65536, timeout: float | None = None) -> bytes | None:
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None
        return self.proc.stdout.read1(size)

    def read_stderr(self) -> bytes:
        self._stderr_thread.join(0.5)
        return bytes(self._stderr)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.close_stdin()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def collect(
    process: AgentProcess, stdin: bytes = b"", timeout: float = 30.0
) -> tuple[int, bytes, bytes]:
    """Run a short agent command to completion: (exit code, stdout, stderr)."""
    try:
        if stdin:
            process.write(stdin)
        process.close_stdin()
        out = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentError(f"The agent did not answer within {timeout:.0f} seconds")
            chunk = process.read(65536, timeout=min(remaining, 0.5))
            if chunk is None:
                continue
            if chunk == b"":
                break
            out += chunk
        code = process.wait(max(0.1, deadline - time.monotonic()))
        if code is None:
            raise AgentError(f"The agent did not exit within {timeout:.0f} seconds")
        return code, bytes(out), process.read_stderr()
    finally:
        process.close()


class AgentConnection(ABC):
    launch_number: int = 0

    @abstractmethod
    def open_agent(self, args: list[str]) -> AgentProcess: ...

    def run_agent(self, args: list[str], stdin: bytes = b"", timeout: float = 30.0):
        return collect(self.open_agent(args), stdin, timeout)

    @abstractmethod
    def is_alive(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


class LocalAgentConnection(AgentConnection):
    """The agent as a local process: ``argv_prefix`` + agent arguments (no shell)."""

    def __init__(self, argv_prefix: list[str], cwd: str | None = None) -> None:
        self.argv_prefix = argv_prefix
        self.cwd = cwd

    def open_agent(self, args: list[str]) -> AgentProcess:
        return LocalProcess(self.argv_prefix + list(args), cwd=self.cwd)

    def is_alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class SSHAgentConnection(AgentConnection):
    """Exec channels on one SSH transport. ``command_for(args)`` builds the remote command line
    (already shell-quoted by the launcher)."""

    def __init__(self, transport: paramiko.Transport, command_for) -> None:
        self.transport = transport
        self.command_for = command_for
        self._sessions = threading.BoundedSemaphore(MAX_CHANNELS_PER_CONNECTION)

    def exec(self, command: str, timeout: float = 30.0) -> ChannelProcess:
        if not self._sessions.acquire(timeout=timeout):
            raise AgentError("All SSH sessions of this connection are busy")
        try:
            channel = self.transport.open_session(timeout=timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._sessions.release()
            raise AgentError(f"Unable to open an SSH channel: {exc}") from exc
        return ChannelProcess(channel, self._sessions.release)

    def run_command(self, command: str, timeout: float = 30.0) -> tuple[int, bytes, bytes]:
        return collect(self.exec(command, timeout), b"", timeout)

    def open_agent(self, args: list[str]) -> AgentProcess:
        return self.exec(self.command_for(args))

    def is_alive(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        self.transport.close()


class ConnectionPool:
    """Per process: node id → its live connection, for the node's current launch."""

    def __init__(self) -> None:
        self._connections: dict[int, AgentConnection] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[int, threading.Lock] = {}

    def _node_lock(self, node_id: int) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(node_id, threading.Lock())

    def put(self, node_id: int, connection: AgentConnection) -> None:
        with self._lock:
            old = self._connections.pop(node_id, None)
            self._connections[node_id] = connection
        if old is not None and old is not connection:
            old.close()

    def get(self, node) -> AgentConnection:
        """The node's connection in this process, opened on first use (no copy, no hello)."""
        from nodes.launchers import launcher_for

        with self._node_lock(node.pk):
            with self._lock:
                current = self._connections.get(node.pk)
            if (
                current is not None
                and current.launch_number == node.launch_number
                and current.is_alive()
            ):
                return current
            if current is not None:
                self.discard(node.pk)
            connection = launcher_for(node).connect(node)
            connection.launch_number = node.launch_number
            self.put(node.pk, connection)
            return connection

    def peek(self, node_id: int) -> AgentConnection | None:
        with self._lock:
            return self._connections.get(node_id)

    def discard(self, node_id: int) -> None:
        with self._lock:
            connection = self._connections.pop(node_id, None)
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            connection.close()


pool = ConnectionPool()
