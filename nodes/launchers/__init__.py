"""Launch methods, each a small class behind one registry: "Launch agents via SSH", "Launch
agent via execution of command on the controller", and the built-in node's local process.

A launcher knows its configuration fields (a form), how to describe itself in the log, how to
``launch`` (the whole sequence, logged) and how to ``connect`` (a quick connection in another
worker process of a node that is already online: no copy, no hello, no log)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from nodes.connections import AgentConnection, AgentError


class LaunchError(Exception):
    """A launch step failed. ``retry`` says whether trying again can help (it cannot for a
    rejected host key or junk printed by login scripts: a person must act first)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class LaunchCancelled(Exception):
    pass


@dataclass
class LaunchResult:
    connection: AgentConnection
    agent_info: dict


class Launcher:
    kind: str = ""
    display_name: str = ""
    launch_supported: bool = True

    def describe(self, node) -> str:
        return self.display_name

    def retries(self, node) -> tuple[int, int]:
        """(maximum number of retries, seconds to wait between them)."""
        return 0, 0

    def launch(self, node, log, cancelled: Callable[[], bool]) -> LaunchResult:
        raise NotImplementedError

    def connect(self, node) -> AgentConnection:
        raise NotImplementedError

    def form_class(self):
        return None


def parse_hello(stdout: bytes) -> dict:
    """The agent's ``hello`` answer: one JSON line (the last non-empty line of stdout)."""
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        raise LaunchError("The agent printed nothing in answer to hello")
    try:
        info = json.loads(lines[-1])
    except ValueError as exc:
        raise LaunchError(f"The agent's answer to hello is not JSON: {lines[-1][:200]}") from exc
    if not isinstance(info, dict):
        raise LaunchError("The agent's answer to hello is not a JSON object")
    return info


def log_agent_online(log, info: dict, launcher_name: str, protocol: str) -> None:
    """The closing lines of a successful launch, like SlaveComputer.setChannel's."""
    log.raw(f"Agent version: {info.get('agent_version', 'unknown')}")
    log.raw(f"Launcher: {launcher_name}")
    log.raw(f"Communication Protocol: {protocol}")
    os_name = (info.get("os") or {}).get("name") or info.get("os_name") or ""
    log.raw(
        "This is a Windows agent"
        if str(os_name).lower().startswith("win")
        else "This is a Unix agent"
    )
    log.raw("Agent successfully connected and online")


_REGISTRY: dict[str, Launcher] = {}


def register(launcher: Launcher) -> Launcher:
    _REGISTRY[launcher.kind] = launcher
    return launcher


def launcher_for(node) -> Launcher:
    _load()
    try:
        return _REGISTRY[node.launcher]
    except KeyError:
        raise AgentError(f"Unknown launch method {node.launcher!r}") from None


def launchers() -> dict[str, Launcher]:
    _load()
    return dict(_REGISTRY)


def _load() -> None:
    # Always import: another module (the forms) may have imported one launcher already, which
    # leaves the registry non-empty but incomplete. Re-imports are dictionary lookups.
    from nodes.launchers import command, local, ssh  # noqa: F401
