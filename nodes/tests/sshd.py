"""A real OpenSSH sshd for tests, with its own config, host keys and authorized_keys.

``SshServer`` runs ``/usr/sbin/sshd -D -e -f <generated config>`` on a free loopback port. It
logs in a dedicated local user, ``steward-agent`` (``AGENT_USER``), which ``ensure_agent_user``
creates when missing (``useradd --create-home``, home ``/home/steward-agent``, shell
``/bin/bash``) and whose password it sets to ``AGENT_PASSWORD`` with ``chpasswd``. That needs
root, as in the sandbox and in CI; the user is left in place for later runs.

Variants: password and/or public-key authentication, root login, "junk" printed before every
command (a ForceCommand wrapper, like a noisy ``.bashrc``), no ``python3`` on PATH, a given
``MaxSessions``, and given host keys (to start a second server with a different key on the same
port and so simulate a changed host key). ``stop()`` ends sshd and every process it started
(per-connection sshd processes and the user's commands) and checks none is left.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
AGENT_USER = "steward-agent"
AGENT_PASSWORD = "Steward-agent-test-password-7"
AGENT_HOME = Path("/home") / AGENT_USER
KEY_ALGORITHMS = {"ed25519": "ssh-ed25519", "rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256"}


@dataclass(frozen=True)
class AgentUser:
    name: str
    password: str
    home: Path
    uid: int
    gid: int


_user_ready = False


def ensure_agent_user() -> AgentUser:
    """The dedicated test user, created (and its password set) if needed. Needs root."""
    global _user_ready
    if os.geteuid() != 0:
        raise RuntimeError("The sshd test fixture needs root (to run sshd and add a user).")
    try:
        pwd.getpwnam(AGENT_USER)
        exists = True
    except KeyError:
        exists = False
    if not exists:
        result = subprocess.run(
            [
                "useradd",
                "--create-home",
                "--home-dir",
                str(AGENT_HOME),
                "--shell",
                "/bin/bash",
                "--comment",
                "Steward test agent",
                AGENT_USER,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by a parallel run
            raise RuntimeError(f"useradd failed: {result.stderr.strip()}")
    if not _user_ready:
        subprocess.run(
            ["chpasswd"], input=f"{AGENT_USER}:{AGENT_PASSWORD}\n", text=True, check=True
        )
        _user_ready = True
    entry = pwd.getpwnam(AGENT_USER)
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    return AgentUser(AGENT_USER, AGENT_PASSWORD, home, entry.pw_uid, entry.pw_gid)


def fingerprint(public_line: str) -> str:
    """``SHA256:<base64, no padding>`` of an OpenSSH public key line, as ``ssh-keygen -l``."""
    blob = base64.b64decode(public_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _keygen(path: Path, key_type: str, passphrase: str = "", comment: str = "") -> str:
    args = [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path)]
    if key_type == "rsa":
        args[4:4] = ["-b", "2048"]  # smaller is faster to generate; fine for tests
    subprocess.run(args, check=True, capture_output=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass(frozen=True)
class HostKey:
    """A host key pair: the private key file sshd reads and the public line clients pin."""

    path: Path
    public_line: str  # "ssh-ed25519 AAAA..." (no comment)

    @property
    def algorithm(self) -> str:
        return self.public_line.split()[0]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_line)

    @classmethod
    def generate(cls, directory: Path, key_type: str = "ed25519") -> HostKey:
        path = Path(directory) / f"ssh_host_{key_type}_key"
        line = _keygen(path, key_type)
        return cls(path, " ".join(line.split()[:2]))

    @classmethod
    def load(cls, path: Path) -> HostKey:
        line = Path(f"{path}.pub").read_text().strip()
        return cls(Path(path), " ".join(line.split()[:2]))


@dataclass(frozen=True)
class ClientKey:
    """A client key pair; ``passphrase`` is set for an encrypted private key."""

    path: Path
    public_line: str
    passphrase: str | None = None

    @property
    def private_text(self) -> str:
        return self.path.read_text()

    def pkey(self) -> paramiko.PKey:
        # paramiko 5.1 hands the password to cryptography, which wants bytes.
        secret = self.passphrase.encode() if self.passphrase else None
        return paramiko.PKey.from_path(self.path, password=secret)

    @classmethod
    def generate(
        cls, directory: Path, name: str, passphrase: str | None = None, key_type: str = "ed25519"
    ) -> ClientKey:
        path = Path(directory) / name
        line = _keygen(path, key_type, passphrase or "", comment=name)
        return cls(path, line, passphrase)


def _die_with_parent() -> None:  # in the child before exec: a killed pytest takes sshd along
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def descendants(pid: int) -> set[int]:
    """Live processes below ``pid`` (from /proc)."""
    children = _children_map()
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _no_python_bin(directory: Path) -> Path:
    """A PATH directory with the usual commands but no python*."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for source in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(source):
            continue
        for name in os.listdir(source):
            target = bin_dir / name
            if name.startswith("python") or target.exists() or target.is_symlink():
                continue
            target.symlink_to(os.path.join(source, name))
    bin_dir.chmod(0o755)
    return bin_dir


@dataclass
class SshServer:
    """One private sshd. Use as a context manager, or call ``start()`` / ``stop()``."""

    port: int | None = None
    host_keys: list[HostKey] | None = None  # default: new ed25519 and rsa keys
    key_types: tuple[str, ...] = ("ed25519", "rsa")
    password_auth: bool = True
    pubkey_auth: bool = True
    permit_root: bool = False
    junk: str | None = None  # printed on stdout before every command
    no_python: bool = False  # no python3 on PATH
    max_sessions: int = 10
    authorized_keys: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.user = ensure_agent_user()
        self.dir = Path(tempfile.mkdtemp(prefix="steward-sshd-"))
        self.dir.chmod(0o755)  # sshd reads authorized_keys as the user
        self.proc: subprocess.Popen | None = None
        self.leftovers: list[int] = []
        if self.host_keys is None:
            self.host_keys = [HostKey.generate(self.dir, t) for t in self.key_types]
        self._fixed_port = self.port is not None
        self._write_authorized_keys()

    # -- facts for tests ----------------------------------------------------------------
    @property
    def username(self) -> str:
        return self.user.name

    @property
    def password(self) -> str:
        return self.user.password

    @property
    def fingerprints(self) -> dict[str, str]:
        """``{algorithm: "SHA256:..."}`` of every host key."""
        return {k.algorithm: k.fingerprint for k in self.host_keys}

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the first host key (ed25519 by default; paramiko prefers it)."""
        return self.host_keys[0].fingerprint

    def host_key_line(self, algorithm: str | None = None) -> str:
        """The public host key as ``algorithm base64`` (a "manually provided key")."""
        for key in self.host_keys:
            if algorithm is None or key.algorithm == algorithm:
                return key.public_line
        raise KeyError(algorithm)

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def known_hosts_lines(self) -> list[str]:
        return [f"{self.known_hosts_name} {k.public_line}" for k in self.host_keys]

    def log(self) -> str:
        try:
            return (self.dir / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- configuration --------------------------------------------------------------------
    def authorize(self, public_line: str) -> None:
        """Add a client public key to the user's authorized_keys (effective at once)."""
        self.authorized_keys.append(public_line.strip())
        self._write_authorized_keys()

    def _write_authorized_keys(self) -> None:
        path = self.dir / "authorized_keys"
        path.write_text("".join(line + "\n" for line in self.authorized_keys))
        path.chmod(0o644)

    def _config(self) -> str:
        users = [self.user.name] + (["root"] if self.permit_root else [])
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            *(f"HostKey {k.path}" for k in self.host_keys),
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PermitUserRC no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            "MaxStartups 100",
            "LoginGraceTime 30",
            f"MaxSessions {self.max_sessions}",
            f"PubkeyAuthentication {'yes' if self.pubkey_auth else 'no'}",
            f"PasswordAuthentication {'yes' if self.password_auth else 'no'}",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            f"PermitRootLogin {'yes' if self.permit_root else 'no'}",
            f"AllowUsers {' '.join(users)}",
            f"Subsystem sftp {SFTP_SERVER}",
        ]
        if self.no_python:
            lines.append(f"SetEnv PATH={_no_python_bin(self.dir)}")
        if self.junk is not None:
            lines.append(f"ForceCommand {self._junk_wrapper()}")
        return "\n".join(lines) + "\n"

    def _junk_wrapper(self) -> Path:
        junk = self.dir / "junk.txt"
        junk.write_text(self.junk)
        junk.chmod(0o644)
        wrapper = self.dir / "noisy-login.sh"
        # SFTP stays clean so only the command channel carries the junk.
        wrapper.write_text(
            "#!/bin/sh\n"
            "# Prints text before every command, like a noisy .bashrc.\n"
            f'if [ "$SSH_ORIGINAL_COMMAND" = "{SFTP_SERVER}" ]; then exec {SFTP_SERVER}; fi\n'
            f"cat {junk}\n"
            'if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec "$SHELL" -l; fi\n'
            'exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        wrapper.chmod(0o755)
        return wrapper

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> SshServer:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        for _attempt in range(5):
            if not self._fixed_port:
                from console.testing import free_port

                self.port = free_port()
            config = self.dir / "sshd_config"
            config.write_text(self._config())
            with open(self.dir / "sshd.log", "wb") as log:
                self.proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            if self._wait_ready():
                return self
            self.proc.wait(timeout=5)
            if self._fixed_port or "Address already in use" not in self.log():
                break
        raise RuntimeError(f"sshd did not start on port {self.port}:\n{self.log()}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        return False

    def stop(self) -> None:
        """Stop sshd and everything below it; ``leftovers`` lists pids that would not die."""
        if self.proc is None:
            return
        below = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Per-connection sshd processes and the user's commands outlive the listener.
        below |= _all_descendants(below)
        _signal_all(below, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pid_alive(p) for p in below):
            time.sleep(0.05)
        below |= _all_descendants(below)
        _signal_all([p for p in below if pid_alive(p)], signal.SIGKILL)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pid_alive(p) for p in below):
            time.sleep(0.05)
        self.leftovers = [pid for pid in below if pid_alive(pid)]
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- paramiko helpers -------------------------------------------------------------------
    def client(
        self,
        *,
        key: ClientKey | None = None,
        password: str | None = None,
        username: str | None = None,
        sock: socket.socket | None = None,
    ) -> paramiko.SSHClient:
        """A connected SSHClient that accepts only this server's host keys."""
        client = paramiko.SSHClient()
        for key_obj in self.host_keys:
            algorithm, blob = key_obj.public_line.split()
            client.get_host_keys().add(
                self.known_hosts_name,
                algorithm,
                paramiko.PKey.from_type_string(algorithm, base64.b64decode(blob)),
            )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.host,
            self.port,
            username=username or self.username,
            pkey=key.pkey() if key else None,
            password=password,
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
        return client


def _signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _all_descendants(pids: set[int]) -> set[int]:
    found: set[int] = set()
    for pid in pids:
        found |= descendants(pid)
    return found


def run_command(client: paramiko.SSHClient, command: str, timeout: float = 20) -> tuple:
    """``(exit status, stdout bytes, stderr bytes)`` of one exec channel."""
    channel = client.get_transport().open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.exec_command(command)
    stdout = channel.makefile("rb").read()
    stderr = channel.makefile_stderr("rb").read()
    status = channel.recv_exit_status()
    channel.close()
    return status, stdout, stderr
