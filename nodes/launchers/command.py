"""Launch agent via execution of command on the controller: the admin's command starts the
agent program (``ssh host python3 agent.pyz``, ``docker exec -i c python3 /agent.pyz`` ...);
Steward appends the agent's arguments and talks to it over the command's stdin/stdout.
The command is split like a shell would (shlex) but no shell runs it."""

from __future__ import annotations

import shlex

from nodes.connections import AgentConnection, AgentError, LocalAgentConnection
from nodes.launchers import (
    Launcher,
    LaunchError,
    LaunchResult,
    log_agent_online,
    parse_hello,
    register,
)


def command_argv(node) -> list[str]:
    command = (node.launcher_config or {}).get("command", "").strip()
    if not command:
        raise LaunchError("No launch command specified", retry=False)
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise LaunchError(f"The launch command cannot be parsed: {exc}", retry=False) from exc


class CommandLauncher(Launcher):
    kind = "command"
    display_name = "Launch agent via execution of command on the controller"

    def retries(self, node) -> tuple[int, int]:
        config = node.launcher_config or {}
        return int(config.get("max_retries", 0)), int(config.get("retry_wait", 15))

    def describe(self, node) -> str:
        return f"CommandLauncher{{command='{(node.launcher_config or {}).get('command', '')}'}}"

    def connect(self, node) -> AgentConnection:
        try:
            return LocalAgentConnection(command_argv(node))
        except LaunchError as exc:
            raise AgentError(str(exc)) from exc

    def launch(self, node, log, cancelled) -> LaunchResult:
        argv = command_argv(node)
        log.line("Launching agent")
        root = node.remote_fs
        args = ["hello", "--root", root] if root else ["hello"]
        log.raw("$ " + shlex.join(argv + args))
        connection = LocalAgentConnection(argv)
        try:
            code, out, err = connection.run_agent(args, timeout=60)
        except AgentError as exc:
            raise LaunchError(f"Unable to launch the agent for {node.name}: {exc}") from exc
        for line in err.decode("utf-8", "replace").splitlines():
            log.raw(line)
        if code != 0:
            raise LaunchError(f"Process terminated with exit code {code}")
        info = parse_hello(out)
        info["remote_root"] = info.get("root") or root
        info["launcher"] = "CommandLauncher"
        log_agent_online(log, info, "CommandLauncher", "Standard in/out")
        return LaunchResult(connection, info)


register(CommandLauncher())
