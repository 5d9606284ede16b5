"""A protocol-level client for a running console: HTTP with cookies and CSRF, and WebSockets.

What a browser does, without a browser: the runtime tests talk to a real console process.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from console.testing import PASSWORD, test_environment


def child_environment(**overrides: str) -> dict[str, str]:
    """``console.testing.test_environment`` with the test settings module, whose only runtime
    difference is the password hasher: the personas' passwords are hashed with the tests' fast
    MD5 hasher, which the production settings rightly do not accept. The console runs with
    Django's async-safety checks on, as it does in production (the test process turns them off
    for Playwright)."""
    env = test_environment(
        DJANGO_SETTINGS_MODULE="console.settings_test",
        # With Redis: keys of their own, so no other Steward on the same Redis (another test
        # run, a live console) can take this run's tasks or see its messages.
        STEWARD_REDIS_PREFIX=f"steward-test-{uuid.uuid4().hex[:12]}",
        **overrides,
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _headers(message) -> dict[str, str]:
    return {name.lower(): value for name, value in message.items()}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the tests look at each redirect themselves
        return None


@dataclass
class Response:
    status: int
    url: str
    headers: dict[str, str]  # lower-case names
    body: str


@dataclass
class ConsoleClient:
    base_url: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    # --- HTTP
    def request(self, method: str, path: str, data: dict[str, str] | None = None) -> Response:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        try:
            with self._opener.open(req, timeout=15) as resp:
                return Response(resp.status, resp.url, _headers(resp.headers), resp.read().decode())
        except urllib.error.HTTPError as err:  # 3xx (not followed), 4xx, 5xx
            return Response(err.code, err.url, _headers(err.headers), err.read().decode())

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str] | None = None) -> Response:
        """POST a form with the CSRF token, as the console's own forms do."""
        token = self.cookie("csrftoken")
        if token is None:
            self.get("/login")
            token = self.cookie("csrftoken")
        return self.request("POST", path, {**(data or {}), "csrfmiddlewaretoken": token or ""})

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def sign_in(self, username: str, password: str = PASSWORD) -> None:
        self.get("/login")
        resp = self.post("/login", {"username": username, "password": password})
        assert resp.status == 302, f"sign-in as {username} failed: HTTP {resp.status}"
        assert self.cookie("sessionid"), "no session cookie after signing in"

    # --- WebSocket
    def websocket(self, path: str, origin: str | None = None) -> ClientConnection:
        """Open a WebSocket with this client's cookies and a same-site Origin (like a browser)."""
        headers = {"Origin": origin or self.base_url}
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        if cookies:
            headers["Cookie"] = cookies
        ws_url = "ws" + self.base_url.removeprefix("http") + path
        return connect(ws_url, additional_headers=headers, open_timeout=10, close_timeout=2)

    def websocket_refused(self, path: str, origin: str | None = None) -> int:
        """Open a WebSocket expecting the handshake to be refused; return the HTTP status."""
        try:
            with self.websocket(path, origin):
                pass
        except InvalidStatus as exc:
            return exc.response.status_code
        raise AssertionError(f"the WebSocket {path} was accepted")


def start_runtime_check(client: ConsoleClient) -> tuple[int, float]:
    """POST "Test the runtime"; return the new check's id and when the request was sent."""
    sent = time.monotonic()
    resp = client.post("/manage/runtimeCheck")
    assert resp.status == 302, f"POST /manage/runtimeCheck: HTTP {resp.status}"
    match = re.search(r"/manage/runtimeCheck/(\d+)/$", resp.headers["location"])
    assert match, resp.headers["location"]
    return int(match.group(1)), sent


def follow_check(ws: ClientConnection, timeout: float = 20.0) -> list[tuple[float, dict]]:
    """Receive events (with their arrival time) until the check is done or interrupted."""
    events: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        events.append((time.monotonic(), message))
        if message.get("status") in {"done", "interrupted"} or "error" in message:
            return events
    raise AssertionError(f"the check did not finish in {timeout}s; received {events}")
