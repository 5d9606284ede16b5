"""Launch agents via SSH (the SSH Build Agents plugin's launcher, in its words), with paramiko.

The sequence (DESIGN.md "The agent"): our own socket with TCP_NODELAY (paramiko sets none: about
40 ms per round trip without it), the host key checked by the node's strategy, authentication
with the node's credential (the key stays in memory), the junk check, the Python check, the
remote root, the agent copied over SFTP only when its hash differs, ``agent.pyz hello``.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import shlex
import socket
import stat

import paramiko

from nodes import agent_package, hostkeys
from nodes.connections import AgentError, SSHAgentConnection
from nodes.launchers import (
    LaunchCancelled,
    Launcher,
    LaunchError,
    LaunchResult,
    log_agent_online,
    parse_hello,
    register,
)

DEFAULTS = {
    "port": 22,
    "python_path": "",
    "prefix_start_cmd": "",
    "suffix_start_cmd": "",
    "launch_timeout": 60,
    "max_retries": 10,
    "retry_wait": 15,
    "tcp_nodelay": True,
    "host_key_strategy": "manually_trusted",
    "require_manual_trust": False,
    "provided_key": "",
}
MIN_PYTHON = (3, 8)
AGENT_FILE = "agent.pyz"
PYTHON_VERSION_CHECK = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


def config_of(node) -> dict:
    return {**DEFAULTS, **(node.launcher_config or {})}


def _python(config: dict) -> str:
    return (config.get("python_path") or "").strip() or "python3"


def agent_command(config: dict, remote_root: str, args: list[str]) -> str:
    """``prefix`` + ``cd "<root>" && python3 <root>/agent.pyz <args>`` + ``suffix``.

    Prefix and suffix are the admin's own shell fragments, concatenated as Jenkins does;
    everything else is quoted."""
    agent = posixpath.join(remote_root, AGENT_FILE)
    quoted = " ".join(shlex.quote(a) for a in args)
    return (
        f"{config.get('prefix_start_cmd') or ''}cd {shlex.quote(remote_root)} && "
        f"{shlex.quote(_python(config))} {shlex.quote(agent)} {quoted}"
        f"{config.get('suffix_start_cmd') or ''}"
    )


class SSHLauncher(Launcher):
    kind = "ssh"
    display_name = "Launch agents via SSH"

    def retries(self, node) -> tuple[int, int]:
        config = config_of(node)
        return int(config["max_retries"]), int(config["retry_wait"])

    def describe(self, node) -> str:
        c = config_of(node)
        return (
            f"SSHLauncher{{host='{c.get('host', '')}', port={c['port']}, "
            f"credentialsId='{c.get('credentials_id', '')}', pythonPath='{c['python_path']}', "
            f"prefixStartSlaveCmd='{c['prefix_start_cmd']}', "
            f"suffixStartSlaveCmd='{c['suffix_start_cmd']}', "
            f"launchTimeoutSeconds={c['launch_timeout']}, maxNumRetries={c['max_retries']}, "
            f"retryWaitTime={c['retry_wait']}, "
            f"sshHostKeyVerificationStrategy={hostkeys.STRATEGIES.get(c['host_key_strategy'], '?')}, "
            f"tcpNoDelay={str(bool(c['tcp_nodelay'])).lower()}}}"
        )

    # --- the connection: socket, host key, authentication --------------------------------

    def _open_transport(self, node, log=None) -> paramiko.Transport:
        config = config_of(node)
        host, port = (config.get("host") or "").strip(), int(config.get("port") or 22)
        timeout = float(config.get("launch_timeout") or 60)
        if not host:
            raise LaunchError("The Host must be specified", retry=False)
        if log:
            log.line(f"[SSH] Opening SSH connection to {host}:{port}.")
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise LaunchError(
                f"Connection to {host}:{port} timed out after {timeout:.0f} seconds"
            ) from exc
        except OSError as exc:
            raise LaunchError(f"Cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        if config.get("tcp_nodelay", True):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        preferred = hostkeys.preferred_key_types(node)
        if preferred:
            options = transport.get_security_options()
            options.key_types = preferred + [k for k in options.key_types if k not in preferred]
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise LaunchError(
                f"Key exchange with {host}:{port} failed: {exc or type(exc).__name__}. The server "
                "may only offer algorithms this controller no longer accepts (SHA-1, small groups)."
            ) from exc
        key = transport.get_remote_server_key()
        verdict = hostkeys.verify(node, host, port, key)
        if log:
            log.line(verdict.line)
        if not verdict.allowed:
            transport.close()
            raise LaunchError(
                f"Host key verification failed for {host}:{port} "
                f"({key.get_name()} {hostkeys.fingerprint(key)})",
                retry=False,
            )
        try:
            self._authenticate(node, transport, config, log)
        except Exception:
            transport.close()
            raise
        return transport

    def _authenticate(self, node, transport: paramiko.Transport, config: dict, log) -> None:
        from nodes.credentials_bridge import ssh_login

        credentials_id = (config.get("credentials_id") or "").strip()
        login = ssh_login(credentials_id, node)
        try:
            if login.private_key is not None:
                transport.auth_publickey(login.username, login.private_key)
            else:
                transport.auth_password(login.username, login.password or "", fallback=False)
        except paramiko.AuthenticationException as exc:
            if log:
                log.line("[SSH] Authentication failed.")
                method = "publickey" if login.private_key is not None else "password"
                if login.private_key is not None:
                    log.raw(
                        f"ERROR: Server rejected the 1 private key(s) for {login.display_username} "
                        f"(credentialId:{credentials_id}/method:{method})"
                    )
                else:
                    log.raw(
                        f"ERROR: Failed to authenticate as {login.display_username}. Wrong password. "
                        f"(credentialId:{credentials_id}/method:{method})"
                    )
            raise LaunchError("Authentication failed.") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LaunchError(f"Authentication failed: {exc}") from exc
        if not transport.is_authenticated():
            raise LaunchError("Authentication failed.")
        if log:
            log.line("[SSH] Authentication successful.")

    def _connection(
        self, transport: paramiko.Transport, config: dict, root: str
    ) -> SSHAgentConnection:
        return SSHAgentConnection(transport, lambda args: agent_command(config, root, args))

    def connect(self, node) -> SSHAgentConnection:
        config = config_of(node)
        try:
            transport = self._open_transport(node)
        except LaunchError as exc:
            raise AgentError(str(exc)) from exc
        root = (node.agent_info or {}).get("remote_root") or node.remote_fs
        return self._connection(transport, config, root)

    # --- the whole launch --------------------------------------------------------------------

    def launch(self, node, log, cancelled) -> LaunchResult:
        config = config_of(node)
        transport = self._open_transport(node, log)
        try:
            try:
                return self._prepare_and_hello(node, log, cancelled, config, transport)
            except (paramiko.SSHException, OSError, EOFError, AgentError) as exc:
                # The connection broke (or timed out) mid-launch: a failure worth retrying.
                raise LaunchError(
                    f"The SSH connection failed during the launch: {exc or type(exc).__name__}"
                ) from exc
        except BaseException:
            log.line("Launch failed - cleaning up connection")
            transport.close()
            log.line("[SSH] Connection closed.")
            raise

    def _check(self, cancelled) -> None:
        if cancelled():
            raise LaunchCancelled("Launching agent process aborted.")

    def _prepare_and_hello(self, node, log, cancelled, config, transport) -> LaunchResult:
        timeout = float(config.get("launch_timeout") or 60)
        connection = self._connection(transport, config, node.remote_fs)
        self._check(cancelled)

        # Junk check: a quiet `exit 0` must print nothing (login scripts that echo break us).
        code, out, err = connection.run_command("exit 0", timeout)
        junk = (out + err).decode("utf-8", "replace")
        if junk.strip():
            log.raw(
                "SSH connection reports a garbage before a command execution.\n"
                "Check your .bashrc, .profile, and so on to make sure it is quiet.\n"
                "The received junk text is as follows:"
            )
            log.raw(junk)
            raise LaunchError(
                "Login scripts of the remote user print text (see the log); make them quiet",
                retry=False,
            )
        self._check(cancelled)

        # Python: the role Java plays for Jenkins' agents.
        python = _python(config)
        log.line(f"[SSH] Checking Python version of {python}")
        command = f"{config.get('prefix_start_cmd') or ''}{shlex.quote(python)} -c {shlex.quote(PYTHON_VERSION_CHECK)}"
        code, out, err = connection.run_command(command, timeout)
        version_text = out.decode("utf-8", "replace").strip()
        if code != 0 or not re.fullmatch(r"\d+\.\d+\.\d+", version_text):
            detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [
                f"exit code {code}"
            ]
            raise LaunchError(
                f"{python} was not found or does not run on the agent ({detail[0]}). Install "
                f"Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later, or set the Python Path.",
                retry=False,
            )
        log.line(f"[SSH] {python} --version returned {version_text}.")
        version = tuple(int(p) for p in version_text.split("."))
        if version[:2] < MIN_PYTHON:
            raise LaunchError(
                f"Python version {version_text} was found but {MIN_PYTHON[0]}.{MIN_PYTHON[1]} "
                "or later is needed.",
                retry=False,
            )
        self._check(cancelled)

        # Remote root and the agent program, over SFTP.
        log.line("[SSH] Starting sftp client.")
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LaunchError(f"SFTP is not available on the agent: {exc}") from exc
        try:
            root = self._remote_root(sftp, node.remote_fs, log)
            connection = self._connection(transport, config, root)
            self._copy_agent(sftp, root, log)
        finally:
            sftp.close()
        self._check(cancelled)

        log.line(
            "[SSH] Starting agent process: "
            + agent_command(config, root, ["hello", "--root", root])
        )
        code, out, err = connection.run_agent(["hello", "--root", root], timeout=timeout)
        for line in err.decode("utf-8", "replace").splitlines():
            log.raw(line)
        if code != 0:
            raise LaunchError(f"The agent exited with code {code} in answer to hello")
        info = parse_hello(out)
        info["remote_root"] = root
        info["launcher"] = "SSHLauncher"
        log_agent_online(log, info, "SSHLauncher", "SSH exec channels")
        return LaunchResult(connection, info)

    def _remote_root(self, sftp: paramiko.SFTPClient, remote_fs: str, log) -> str:
        path = remote_fs.strip()
        if not path:
            raise LaunchError("Remote directory is mandatory", retry=False)
        if not path.startswith("/"):
            resolved = sftp.normalize(".") + "/" + path
            log.raw(f"NOTE: Relative remote path resolved to: {resolved}")
            path = resolved
        try:
            st = sftp.stat(path)
        except FileNotFoundError:
            log.line(
                f"[SSH] Remote file system root {path} does not exist. Will try to create it..."
            )
            self._mkdirs(sftp, path)
            return path
        except OSError as exc:
            raise LaunchError(f"Cannot read the remote root {path}: {exc}") from exc
        if not stat.S_ISDIR(st.st_mode or 0):
            raise LaunchError(
                f"Remote file system root {path} is a file not a directory or a symlink.",
                retry=False,
            )
        return path

    def _mkdirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = ""
        for part in parts:
            current += "/" + part
            try:
                sftp.stat(current)
            except FileNotFoundError:
                try:
                    sftp.mkdir(current, mode=0o700)
                except OSError as exc:
                    raise LaunchError(
                        f"Could not create the remote root {path} ({current}: {exc})", retry=False
                    ) from exc

    def _copy_agent(self, sftp: paramiko.SFTPClient, root: str, log) -> None:
        log.line(f"[SSH] Copying latest {AGENT_FILE}...")
        data = agent_package.agent_bytes()
        source_hash = agent_package.agent_hash()
        target = posixpath.join(root, AGENT_FILE)
        try:
            with sftp.open(target, "rb") as fh:
                installed_hash = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            installed_hash = None
        if installed_hash is not None:
            log.raw(f"Source agent hash is {source_hash}. Installed agent hash is {installed_hash}")
            if installed_hash == source_hash:
                log.raw("Verified agent. No update is necessary.")
                return
        temp = target + ".tmp"
        try:
            sftp.putfo(io.BytesIO(data), temp, file_size=len(data))
            sftp.chmod(temp, 0o644)
            sftp.posix_rename(temp, target)
        except OSError as exc:
            raise LaunchError(f"Could not copy {AGENT_FILE} to {target}: {exc}") from exc
        log.line(f"[SSH] Copied {len(data):,} bytes.")


register(SSHLauncher())
