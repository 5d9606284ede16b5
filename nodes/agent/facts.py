"""Facts about the agent host for ``hello`` and ``monitor`` (standard library only, fast)."""

from __future__ import annotations

import os
import sys
import time

from . import protocol

# Java's os.arch names, so the Architecture column reads like Jenkins ("Linux (amd64)").
_JAVA_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "x86": "x86",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
_JAVA_OS = {"Darwin": "Mac OS X", "SunOS": "SunOS", "Linux": "Linux", "FreeBSD": "FreeBSD"}


def archive_path():
    """The ``agent.pyz`` this code runs from, or ``None`` when not run from an archive."""
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    if archive and os.path.isfile(archive):
        return os.path.abspath(archive)
    return None


def _sha256():
    # The built-in module loads much faster than hashlib (which opens OpenSSL).
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256()


def own_hash():
    """sha256 hex of the archive this agent runs from (what the controller compares)."""
    path = archive_path()
    if path is None:
        return None
    digest = _sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def architecture() -> dict:
    uname = os.uname()
    machine = uname.machine
    os_name = _JAVA_OS.get(uname.sysname, uname.sysname)
    return {
        "machine": machine,
        "label": "%s (%s)" % (os_name, _JAVA_ARCH.get(machine.lower(), machine)),
    }


def disk(path) -> dict:
    """Free/total bytes of the file system holding ``path`` (free = usable by this user)."""
    result = {"path": path, "free": None, "total": None, "error": None}
    if path is None:
        result["error"] = "no directory given"
        return result
    try:
        st = os.statvfs(path)
    except OSError as exc:
        result["error"] = "%s: %s" % (exc.strerror or exc.__class__.__name__, path)
        return result
    result["free"] = st.f_bavail * st.f_frsize  # what this user can still write
    result["total"] = st.f_blocks * st.f_frsize
    return result


def temp_dir() -> str:
    """The directory ``tempfile.gettempdir()`` would pick, without importing tempfile."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = os.environ.get(name)
        if value and os.path.isdir(value) and os.access(value, os.W_OK | os.X_OK):
            return os.path.abspath(value)
    for candidate in ("/tmp", "/var/tmp", "/usr/tmp"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return os.getcwd()


def memory():
    """Physical memory and swap in bytes from /proc/meminfo, or ``None`` where there is none."""
    try:
        with open("/proc/meminfo") as fp:
            lines = fp.read().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key] = int(parts[0]) * factor
    if "MemTotal" not in values:
        return None
    available = values.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(values.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return {
        "total_physical": values["MemTotal"],
        "available_physical": available,
        "total_swap": values.get("SwapTotal", 0),
        "available_swap": values.get("SwapFree", 0),
    }


def clock_ms() -> int:
    return int(time.time() * 1000)


def monitor(root) -> dict:
    """The node-monitor sample: clock, disk of the remote root, temp space, memory, arch."""
    root = os.path.abspath(root) if root is not None else None
    root_disk = disk(root)
    if root is not None and root_disk["error"] is None and not os.path.isdir(root):
        root_disk["error"] = "Remote file system root %s is a file not a directory" % root
    return {
        "clock_ms": clock_ms(),
        "architecture": architecture(),
        "disk": root_disk,
        "temp": disk(temp_dir()),
        "memory": memory(),
    }


def hello(root) -> dict:
    """Everything the controller wants to know when the agent comes online."""
    uname = os.uname()
    info = monitor(root)
    info.update(
        {
            "agent_version": protocol.AGENT_VERSION,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "agent_hash": own_hash(),
            "python": {
                "version": "%d.%d.%d" % sys.version_info[:3],
                "implementation": sys.implementation.name,
                "executable": sys.executable,
            },
            "os": {"name": uname.sysname, "release": uname.release, "version": uname.version},
            "cpus": os.cpu_count(),
            "hostname": uname.nodename,  # what socket.gethostname() returns
            "user": _user(),
            "cwd": os.getcwd(),
            "environment": dict(os.environ),
        }
    )
    return info


def _user():
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("USERNAME")
