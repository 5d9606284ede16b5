"""Fixtures for node tests: a real sshd (``sshd``, ``sshd_factory``) and client key pairs."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodes import agent_package
from nodes.tests.sshd import ClientKey, SshServer, descendants, ensure_agent_user


@pytest.fixture(scope="session")
def agent_user():
    """The dedicated ``steward-agent`` login user (created if missing)."""
    return ensure_agent_user()


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> ClientKey:
    """An ed25519 client key pair without a passphrase."""
    return ClientKey.generate(tmp_path_factory.mktemp("client-keys"), "id_ed25519")


@pytest.fixture(scope="session")
def encrypted_client_key(tmp_path_factory) -> ClientKey:
    """An ed25519 client key pair whose private key is encrypted with a passphrase."""
    return ClientKey.generate(
        tmp_path_factory.mktemp("client-keys"), "id_ed25519_enc", passphrase="open sesame 42"
    )


@pytest.fixture
def sshd_factory(
    agent_user, client_key, encrypted_client_key
) -> Iterator[Callable[..., SshServer]]:
    """Starts servers with ``SshServer`` options; both client keys are authorized.

    Teardown stops them all and fails the test if an sshd (or anything it started) survives.
    """
    servers: list[SshServer] = []

    def start(**options) -> SshServer:
        options.setdefault(
            "authorized_keys", [client_key.public_line, encrypted_client_key.public_line]
        )
        server = SshServer(**options)
        servers.append(server)
        return server.start()

    yield start
    leftovers = []
    for server in servers:
        pid = server.proc.pid if server.proc else None
        server.cleanup()
        leftovers += server.leftovers
        if pid is not None:
            leftovers += sorted(descendants(pid))
    assert not leftovers, f"processes left behind by sshd: {leftovers}"


@pytest.fixture
def sshd(sshd_factory) -> SshServer:
    """A running sshd with password and public-key authentication for ``steward-agent``."""
    return sshd_factory()


@pytest.fixture
def remote_root(agent_user) -> Iterator[Path]:
    """A fresh directory path under the agent user's home (not created; removed afterwards)."""
    path = agent_user.home / "roots" / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def agent_pyz(tmp_path_factory) -> Path:
    """The built ``agent.pyz`` as a file."""
    return agent_package.agent_path(tmp_path_factory.mktemp("steward-home"))
