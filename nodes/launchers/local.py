"""The built-in node: the same agent program, run as a local process of the controller."""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings

from console.home import ensure_dir
from nodes import agent_package
from nodes.connections import AgentConnection, LocalAgentConnection
from nodes.launchers import (
    Launcher,
    LaunchError,
    LaunchResult,
    log_agent_online,
    parse_hello,
    register,
)


def local_agent_path() -> Path:
    """agent.pyz in the data directory, rewritten when its hash differs."""
    path = Path(settings.STEWARD_HOME) / "agent" / "agent.pyz"
    data = agent_package.agent_bytes()
    if not path.exists() or path.read_bytes() != data:
        ensure_dir(path.parent)
        temp = path.with_suffix(".tmp")
        temp.write_bytes(data)
        temp.replace(path)
    return path


class BuiltinLauncher(Launcher):
    kind = "builtin"
    display_name = "Built-in node (local process)"

    def _connection(self, node) -> LocalAgentConnection:
        root = Path(node.remote_fs or settings.STEWARD_HOME)
        ensure_dir(root)
        return LocalAgentConnection([sys.executable, str(local_agent_path())], cwd=str(root))

    def connect(self, node) -> AgentConnection:
        return self._connection(node)

    def launch(self, node, log, cancelled) -> LaunchResult:
        log.line("Launching the built-in node's agent as a local process")
        connection = self._connection(node)
        root = str(Path(node.remote_fs or settings.STEWARD_HOME))
        code, out, err = connection.run_agent(["hello", "--root", root], timeout=30)
        for line in err.decode("utf-8", "replace").splitlines():
            log.raw(line)
        if code != 0:
            raise LaunchError(f"The local agent exited with code {code}")
        info = parse_hello(out)
        info["remote_root"] = root
        info["launcher"] = "BuiltinLauncher"
        log_agent_online(log, info, "built-in", "Local process")
        return LaunchResult(connection, info)


register(BuiltinLauncher())
