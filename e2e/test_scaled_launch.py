"""The scaled configuration, seen from a browser: the web process (uvicorn) only serves pages
and WebSockets; a separate Celery worker process launches the agent over SSH; its log lines
travel through Redis (channel layer) and PostgreSQL, and still appear live in Chromium."""

from __future__ import annotations

import re
import signal
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from console.testing import PASSWORD, ConsoleProcess, free_port, make_persona
from console.tests.consoleclient import child_environment
from console.tests.test_runtime import WorkerProcess
from credentials import services as credential_services
from credentials.forms import CredentialInput
from nodes.models import Node

# The sshd fixtures of the node tests (a real OpenSSH server and its login user).
from nodes.tests.conftest import (  # noqa: F401
    agent_user,
    client_key,
    encrypted_client_key,
    remote_root,
    sshd,
    sshd_factory,
)

pytestmark = [pytest.mark.scaled, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scaled_console():
    if not (settings.DATABASE_URL and settings.REDIS_URL):
        pytest.fail(
            "This test needs the scaled configuration: DATABASE_URL (PostgreSQL) and REDIS_URL "
            "(`make test-scaled` sets them)."
        )
    env = child_environment()
    # The production settings, whose password hashers the e2e fixtures use for personas.
    env["DJANGO_SETTINGS_MODULE"] = "console.settings"
    port = free_port()
    web = ConsoleProcess(
        argv=[sys.executable, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1",
              "--port", str(port), "--ws", "websockets-sansio", "--lifespan", "off"],
        env=env, port=port,
    )  # fmt: skip
    name = f"steward-launch-{uuid.uuid4().hex[:8]}@%h"
    worker = WorkerProcess(env, name, Path(settings.STEWARD_HOME) / f"worker-{port}.log")
    try:
        web.start()
        worker.wait_ready(env)
        yield web, worker
    finally:
        worker_rc, _ = worker.stop()
        web_rc, _ = web.stop(signal.SIGTERM)
        assert worker_rc == 0, worker.output()[-4000:]
        assert web_rc in (0, -signal.SIGTERM), web.output()[-4000:]


def test_a_launch_in_a_worker_process_streams_its_log_to_the_browser(
    scaled_console,
    browser_page,
    sshd,
    remote_root,
    shot,
):
    web, worker = scaled_console
    make_persona("olga", "Operators")
    credential_services.create_credential(
        CredentialInput(
            kind="usernamePassword",
            scope="SYSTEM",
            credential_id="sshd-login",
            description="",
            username=sshd.username,
            secrets={"password": sshd.password},
        )
    )
    Node.objects.create(
        name="scaled-agent",
        remote_fs=str(remote_root),
        launcher="ssh",
        retention=Node.Retention.DEMAND,
        launcher_config={
            "host": "127.0.0.1",
            "port": sshd.port,
            "credentials_id": "sshd-login",
            "host_key_strategy": "non_verifying",
            "max_retries": 0,
        },
    )
    page = browser_page
    page.goto(f"{web.url}/login")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/")

    page.goto(f"{web.url}/computer/scaled-agent/")
    page.get_by_role("button", name="Launch agent").first.click()
    expect(page).to_have_url(f"{web.url}/computer/scaled-agent/log")
    page.wait_for_function("document.body.dataset.ws === 'open'", timeout=10_000)
    log = page.locator("#agent-log")
    expect(log).to_contain_text(
        f"[SSH] Opening SSH connection to 127.0.0.1:{sshd.port}.", timeout=20_000
    )
    expect(log).to_contain_text("[SSH] Authentication successful.", timeout=20_000)
    expect(log).to_contain_text("Agent successfully connected and online", timeout=30_000)
    assert sshd.password not in log.inner_text()
    shot(page, "scaled-ssh-launch-log")

    node = Node.objects.get(name="scaled-agent")
    assert node.connection == Node.Connection.CONNECTED
    # The web process runs no worker: the launch ran in the worker process.
    assert "nodes.launch_agent" in worker.output()
    page.goto(f"{web.url}/computer/")
    expect(page.locator("#computers")).to_contain_text(re.compile(r"Linux \(\w+\)"))
