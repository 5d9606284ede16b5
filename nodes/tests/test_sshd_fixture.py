"""The sshd test fixture itself, checked with paramiko the way the SSH launcher will use it."""

from __future__ import annotations

import socket
import subprocess
import time

import paramiko
import pytest

from nodes.tests.sshd import AGENT_USER, ClientKey, SshServer, fingerprint, pid_alive, run_command


def _presented_key(server: SshServer) -> paramiko.PKey:
    """The host key the server shows a client (no authentication)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            return transport.get_remote_server_key()
        finally:
            transport.close()


def _openssh_fingerprint(key: paramiko.PKey) -> str:
    return fingerprint(f"{key.get_name()} {key.get_base64()}")


def test_public_key_authentication(sshd, client_key):
    with sshd.client(key=client_key) as client:
        assert run_command(client, "id -un") == (0, f"{AGENT_USER}\n".encode(), b"")


def test_encrypted_key_with_passphrase(sshd, encrypted_client_key):
    path = str(encrypted_client_key.path)
    with pytest.raises(paramiko.PasswordRequiredException):
        paramiko.Ed25519Key(filename=path)
    with pytest.raises(paramiko.SSHException):
        paramiko.Ed25519Key(filename=path, password="wrong passphrase")
    with sshd.client(key=encrypted_client_key) as client:
        assert run_command(client, "echo $HOME")[1] == f"/home/{AGENT_USER}\n".encode()


def test_unauthorized_key_is_rejected(sshd_factory, client_key, tmp_path):
    server = sshd_factory(authorized_keys=[client_key.public_line])
    stranger = ClientKey.generate(tmp_path, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        server.client(key=stranger)
    server.authorize(stranger.public_line)
    with server.client(key=stranger) as client:
        assert run_command(client, "true")[0] == 0


def test_password_authentication(sshd):
    with sshd.client(password=sshd.password) as client:
        status, out, _ = run_command(client, "id -un")
    assert (status, out) == (0, f"{AGENT_USER}\n".encode())


def test_wrong_password_fails(sshd):
    with pytest.raises(paramiko.AuthenticationException):
        sshd.client(password="not-the-password")


def test_password_auth_can_be_disabled(sshd_factory, client_key):
    server = sshd_factory(password_auth=False)
    with pytest.raises(paramiko.AuthenticationException):
        server.client(password=server.password)
    with server.client(key=client_key) as client:
        assert run_command(client, "true")[0] == 0


def test_junk_shows_in_the_output_of_exit_0(sshd_factory, client_key):
    quiet = sshd_factory()
    noisy = sshd_factory(junk="Welcome to build-07!\nLast backup: never\n")
    with quiet.client(key=client_key) as client:
        assert run_command(client, "exit 0") == (0, b"", b"")
    with noisy.client(key=client_key) as client:
        assert run_command(client, "exit 0") == (
            0,
            b"Welcome to build-07!\nLast backup: never\n",
            b"",
        )
        # The command itself still runs after the junk, and SFTP stays usable.
        assert run_command(client, "echo hi; exit 3")[:2] == (
            3,
            b"Welcome to build-07!\nLast backup: never\nhi\n",
        )
        with client.open_sftp() as sftp:
            assert sftp.normalize(".") == f"/home/{AGENT_USER}"


def test_no_python_on_path(sshd_factory, client_key):
    normal = sshd_factory()
    bare = sshd_factory(no_python=True)
    with normal.client(key=client_key) as client:
        status, out, _ = run_command(client, "command -v python3")
        assert status == 0 and out.strip().endswith(b"/python3")
    with bare.client(key=client_key) as client:
        assert run_command(client, "command -v python3")[0] == 1
        status, _, err = run_command(client, "python3 --version")
        assert status == 127 and b"not found" in err
        # The usual tools are still there.
        assert run_command(client, "mkdir -p /tmp && sha256sum /dev/null")[0] == 0


def test_fingerprints_match_ssh_keygen(sshd):
    for key in sshd.host_keys:
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key.path}.pub"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        assert key.fingerprint == listed
        assert "=" not in key.fingerprint
    assert set(sshd.fingerprints) == {"ssh-ed25519", "ssh-rsa"}
    assert sshd.host_key_line("ssh-ed25519").startswith("ssh-ed25519 AAAA")
    assert len(sshd.host_key_line("ssh-ed25519").split()) == 2
    # paramiko negotiates ed25519 first, and sees exactly that key.
    assert _openssh_fingerprint(_presented_key(sshd)) == sshd.fingerprint


def test_second_server_on_the_same_port_with_another_key(sshd_factory, client_key):
    first = sshd_factory()
    port, old = first.port, first.fingerprint
    with first.client(key=client_key) as client:
        assert run_command(client, "true")[0] == 0
    first.stop()

    second = sshd_factory(port=port)
    assert second.port == port
    presented = _openssh_fingerprint(_presented_key(second))
    assert presented == second.fingerprint != old
    # A client that pinned the first server's key refuses the new one.
    with pytest.raises(paramiko.BadHostKeyException):
        first.client(key=client_key)
    second.stop()

    # And the original key can be given back to a third server on that port.
    third = sshd_factory(port=port, host_keys=first.host_keys)
    assert _openssh_fingerprint(_presented_key(third)) == old
    with first.client(key=client_key) as client:
        assert run_command(client, "true")[0] == 0


def test_tcp_nodelay_socket_passed_to_transport(sshd, client_key):
    sock = socket.create_connection((sshd.host, sshd.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        assert _openssh_fingerprint(transport.get_remote_server_key()) == sshd.fingerprint
        transport.auth_publickey(AGENT_USER, client_key.pkey())
        assert transport.is_authenticated()
        channel = transport.open_session()
        channel.exec_command("echo nodelay")
        assert channel.makefile("rb").read() == b"nodelay\n"
        assert channel.recv_exit_status() == 0
        assert transport.sock is sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        transport.close()


def test_max_sessions(sshd_factory, client_key):
    server = sshd_factory(max_sessions=2)
    with server.client(key=client_key) as client:
        transport = client.get_transport()
        channels = [transport.open_session(timeout=10) for _ in range(2)]
        with pytest.raises(paramiko.ChannelException):
            transport.open_session(timeout=10)
        channels[0].close()
        # A freed slot can be used again once sshd has processed the close.
        for _ in range(50):
            try:
                channels.append(transport.open_session(timeout=10))
                break
            except paramiko.ChannelException:
                time.sleep(0.05)
        assert len(channels) == 3


def test_stop_leaves_no_process_behind(sshd_factory, client_key):
    server = sshd_factory()
    client = server.client(key=client_key)
    channel = client.get_transport().open_session()
    channel.exec_command("sleep 300 & echo $!; wait")
    sleeper = int(channel.makefile("rb").readline())
    listener = server.proc.pid
    assert pid_alive(sleeper)
    server.stop()
    client.close()
    assert server.leftovers == []
    assert not pid_alive(sleeper)
    assert not pid_alive(listener)
