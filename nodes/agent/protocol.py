"""The framed protocol between the controller and ``agent.pyz run`` (standard library only).

Both sides import this one module: the agent from inside ``agent.pyz``, the controller as
``from nodes.agent import protocol``. It must keep running on Python 3.8.

Frames
------
Every record is a *frame*::

    +--------+----------------------+------------------+
    | type   | length               | payload          |
    | 1 byte | 4 bytes, big-endian  | ``length`` bytes |
    +--------+----------------------+------------------+

The type is one ASCII letter so a hex dump is readable. A payload is either raw bytes (OUTPUT)
or one UTF-8 JSON object. A length above ``MAX_PAYLOAD`` or an unknown type is a protocol
error: that is what text printed by a login script (junk) in front of the stream looks like.

Controller -> agent (the agent's stdin)
    ``SPEC``  (JSON, exactly once, first): what to run, see ``make_spec``.
    ``ABORT`` (JSON, optional ``{"reason": ...}``): kill the build's process group.
    Closing stdin (EOF) means the controller side went away: the agent kills the group too.

Agent -> controller (the agent's stdout)
    ``STARTED`` (JSON ``{"pid", "pgid", "agent_pid"}``): the script's process is running.
    ``OUTPUT``  (raw bytes): the script's stdout and stderr, merged, in order, as read
                (batches of up to 64 KiB; never split into lines, never decoded).
    ``EXIT``    (JSON, last frame): ``{"code", "signal", "reason", "leftovers"}``.
                ``code`` is the exit status, ``128 + signal`` when the script was killed by
                a signal (the shell convention, e.g. 137 for SIGKILL), and ``signal`` is that
                signal number or null. ``reason`` is one of ``REASONS``. ``leftovers`` counts
                processes the script left running after it exited, which the agent killed
                (like Jenkins' ProcessTreeKiller).
    ``ERROR``   (JSON ``{"message"}``, last frame): the script could not be started (bad spec,
                workspace cannot be created, shell missing). No EXIT follows.

The agent's stderr is not framed: it carries the agent's own diagnostics for the node log.
"""

from __future__ import annotations

import _thread  # not threading: keep the agent's start-up fast
import json
import struct

PROTOCOL_VERSION = 1
AGENT_VERSION = "1.0.0"

SPEC = 0x53  # "S"
ABORT = 0x41  # "A"
STARTED = 0x50  # "P" (process)
OUTPUT = 0x4F  # "O"
EXIT = 0x58  # "X"
ERROR = 0x45  # "E"

NAMES = {
    SPEC: "SPEC",
    ABORT: "ABORT",
    STARTED: "STARTED",
    OUTPUT: "OUTPUT",
    EXIT: "EXIT",
    ERROR: "ERROR",
}
JSON_TYPES = frozenset([SPEC, ABORT, STARTED, EXIT, ERROR])

# A spec carries the whole script; output frames stay at or under READ_SIZE.
MAX_PAYLOAD = 16 * 1024 * 1024
READ_SIZE = 64 * 1024

# EXIT "reason" values.
EXITED = "exited"  # the script ended by itself
ABORTED = "aborted"  # an ABORT frame
STDIN_CLOSED = "stdin-closed"  # the controller side went away
TIMED_OUT = "timeout"  # the spec's timeout elapsed
AGENT_SIGNALLED = "agent-signal"  # the agent itself got SIGTERM/SIGHUP/SIGINT
REASONS = (EXITED, ABORTED, STDIN_CLOSED, TIMED_OUT, AGENT_SIGNALLED)

DEFAULT_SHELL = ["/bin/sh", "-xe"]  # Jenkins' "Execute shell"
DEFAULT_KILL_GRACE = 1.5  # seconds between SIGTERM and SIGKILL

_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


class ProtocolError(Exception):
    """The byte stream is not a valid sequence of frames (junk, truncation, bad JSON)."""


class Frame:
    """One decoded frame: ``type`` (an int constant) and ``payload`` (bytes)."""

    __slots__ = ("type", "payload")

    def __init__(self, type: int, payload: bytes) -> None:
        self.type = type
        self.payload = payload

    @property
    def name(self) -> str:
        return NAMES.get(self.type, "0x%02x" % self.type)

    def json(self) -> dict:
        """The payload as a JSON object (an empty payload is ``{}``)."""
        if not self.payload:
            return {}
        try:
            value = json.loads(self.payload.decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError("%s frame is not valid JSON: %s" % (self.name, exc)) from None
        if not isinstance(value, dict):
            raise ProtocolError("%s frame is not a JSON object" % self.name)
        return value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Frame) and self.type == other.type and self.payload == other.payload
        )

    def __repr__(self) -> str:
        size = len(self.payload)
        if self.type in JSON_TYPES and size <= 200:
            return "Frame(%s, %r)" % (self.name, self.payload)
        return "Frame(%s, %d bytes)" % (self.name, size)


def encode(type: int, payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    if type not in NAMES:
        raise ValueError("unknown frame type %r" % (type,))
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes is over the %d limit" % (len(payload), MAX_PAYLOAD))
    return _HEADER.pack(type, len(payload)) + payload


def encode_json(type: int, obj: dict) -> bytes:
    """One frame whose payload is ``obj`` as compact UTF-8 JSON."""
    return encode(type, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _check_header(type: int, length: int) -> None:
    if type not in NAMES:
        raise ProtocolError("unknown frame type 0x%02x (junk in the stream?)" % type)
    if length > MAX_PAYLOAD:
        raise ProtocolError("frame length %d is over the %d limit" % (length, MAX_PAYLOAD))


class FrameDecoder:
    """Incremental decoder for non-blocking reads: ``feed(data)`` returns the complete frames.

    Use it with ``os.read`` on a pipe or ``channel.recv`` on a paramiko channel with a timeout.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER_SIZE:
            type, length = _HEADER.unpack_from(self._buffer, 0)
            _check_header(type, length)
            end = HEADER_SIZE + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(type, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF means truncation)."""
        return len(self._buffer)


class FrameReader:
    """Blocking reader over a binary file object (``read(n)``), e.g. a subprocess pipe or
    ``channel.makefile("rb")``. ``read()`` returns the next frame, or ``None`` at a clean EOF.
    """

    def __init__(self, fp) -> None:
        self._fp = fp

    def _read_exact(self, size: int) -> bytes:
        chunks = []
        remaining = size
        while remaining:
            chunk = self._fp.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def read(self):
        header = self._read_exact(HEADER_SIZE)
        if not header:
            return None
        if len(header) < HEADER_SIZE:
            raise ProtocolError("stream ended inside a frame header")
        type, length = _HEADER.unpack(header)
        _check_header(type, length)
        payload = self._read_exact(length)
        if len(payload) < length:
            raise ProtocolError("stream ended inside a %s frame" % NAMES[type])
        return Frame(type, payload)

    def __iter__(self):
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame


class FrameWriter:
    """Writes frames to a binary file object and flushes each one (thread-safe)."""

    def __init__(self, fp) -> None:
        self._fp = fp
        self._lock = _thread.allocate_lock()

    def write(self, type: int, payload: bytes = b"") -> None:
        data = encode(type, payload)
        with self._lock:
            self._fp.write(data)
            self._fp.flush()

    def write_json(self, type: int, obj: dict) -> None:
        data = encode_json(type, obj)
        with self._lock:
            self._fp.write(data)
            self._fp.flush()

    # Controller side conveniences.
    def send_spec(self, spec: dict) -> None:
        self.write_json(SPEC, spec)

    def send_abort(self, reason: str = "") -> None:
        self.write_json(ABORT, {"reason": reason} if reason else {})


def make_spec(
    workspace: str,
    script: str,
    shell=None,
    env=None,
    timeout=None,
    kill_grace=None,
) -> dict:
    """The SPEC payload.

    ``workspace``: directory to create and run in (relative paths are relative to the agent's
    working directory, the remote root). ``script``: the script text; one starting with ``#!``
    runs with that interpreter, like Jenkins. ``shell``: argv prefix, default ``/bin/sh -xe``.
    ``env``: variables set over the agent's environment (a ``None`` value removes one).
    ``timeout``: seconds before the build is killed. ``kill_grace``: seconds from SIGTERM to
    SIGKILL.
    """
    spec = {"workspace": workspace, "script": script}
    if shell is not None:
        spec["shell"] = list(shell)
    if env is not None:
        spec["env"] = dict(env)
    if timeout is not None:
        spec["timeout"] = timeout
    if kill_grace is not None:
        spec["kill_grace"] = kill_grace
    return spec
