"""Browser-test fixtures: Debian's Chromium through Playwright, driving the real console.

The console runs as a subprocess (``manage.py runconsole``, console.testing.ConsoleProcess) on
the file SQLite test database, so every browser test is ``@pytest.mark.django_db(
transaction=True)``: rows must be committed for the console process to see them. Only one
``sync_playwright`` may run per thread, so the browser is shared by the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(autouse=True)
def _server_password_hashers(settings) -> None:
    """Users made in a test must sign in to the console process, which runs the production
    settings: hash their passwords as it does, not with the fast test-only hasher."""
    from django.conf import global_settings

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def browser_page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def console_server(django_db_setup, django_db_blocker) -> Iterator:
    """The real embedded console (web, Celery worker and beat in one process) on a free port,
    against this run's test database. Stopped with SIGTERM at the end; it must exit with 0."""
    from console.testing import ConsoleProcess

    with django_db_blocker.unblock():
        server = ConsoleProcess().start()
        # On its first start the console makes the initial admin (prepare_home); tests make
        # their own users, so every test begins, as after each flush, with no user at all.
        from django.contrib.auth import get_user_model

        get_user_model().objects.all().delete()
    try:
        yield server
    finally:
        code, _seconds = server.stop()
        assert code == 0, f"console exited with {code}:\n{server.output()[-4000:]}"


@pytest.fixture
def login(console_server) -> Callable:
    """``login(page, username, password)``: sign in through the form and wait for the dashboard."""

    def sign_in(page, username: str, password: str) -> None:
        page.goto(f"{console_server.url}/login")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{console_server.url}/")

    return sign_in


@pytest.fixture
def shot() -> Callable:
    """``shot(page, name)``: save a full-page screenshot as e2e/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
