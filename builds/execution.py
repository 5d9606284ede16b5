"""Running one build: the agent's ``run`` on an exec channel of the node's cached connection
(or the built-in node's local agent), streaming its framed output into the build's log.

The task owns the build from "pending" to "finished": it claims the row, heartbeats while the
script runs, turns an abort request or the stuck timeout into an ABORT frame (the agent kills
the whole process group), and always frees the executor at the end.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import socket
import threading
import time

from celery.worker import state as worker_state
from django.conf import settings
from django.utils import timezone

from builds import services
from builds.models import Build
from console import logs
from nodes import services as node_services
from nodes.agent import protocol
from nodes.connections import AgentError, pool

HEARTBEAT_SECONDS = 5.0
SECONDS_PER_MINUTE = 60  # the stuck timeout's unit (tests shorten it)
CHECK_SECONDS = 0.25
ABORT_GRACE_SECONDS = 8.0

Result = Build.Result


def workspace_for(build: Build, root: str) -> str:
    """A fallback for a build claimed without a workspace: ``<remote root>/workspace/<job>``,
    with ``@<executor>`` for concurrent builds."""
    name = build.job.name
    if build.executor_number and build.executor_number > 1 and build.job.concurrent_build:
        name = f"{name}@{build.executor_number}"
    return posixpath.join(root, "workspace", name)


def environment(build: Build, workspace: str) -> dict[str, str]:
    base = settings.STEWARD_URL.rstrip("/") + "/"
    job_url = f"{base}job/{build.job.name}/"
    node = build.node
    env = node.environment if node else {}
    env.update(
        {
            "BUILD_NUMBER": str(build.number),
            "BUILD_ID": str(build.number),
            "BUILD_URL": f"{job_url}{build.number}/",
            "BUILD_TAG": f"steward-{build.job.name}-{build.number}",
            "JOB_NAME": build.job.name,
            "JOB_URL": job_url,
            "NODE_NAME": "built-in" if node and node.is_builtin else build.node_name,
            "NODE_LABELS": " ".join(sorted(_labels(node))) if node else "",
            "EXECUTOR_NUMBER": str((build.executor_number or 1) - 1),
            "WORKSPACE": workspace,
            "STEWARD_URL": base,
            "JENKINS_URL": base,
        }
    )
    return env


def _labels(node) -> frozenset[str]:
    from builds.labels import node_labels

    return node_labels(node.name, node.label_string, is_builtin=node.is_builtin)


class BuildRun:
    def __init__(self, build: Build) -> None:
        self.build = build
        self.stream = logs.open_stream(build.log_key, reset=True)
        self.writer = logs.LogWriter(self.stream)
        self.at_line_start = True
        self.abort_sent = False
        self.abort_reason = ""
        self.last_heartbeat = time.monotonic()
        self.started = time.monotonic()

    # --- log ---------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.writer.write(text.rstrip("\n") + "\n")
        self.at_line_start = True

    def output(self, data: bytes) -> None:
        if not self.build.job.timestamps:
            self.writer.write(data)
            if data:
                self.at_line_start = data.endswith(b"\n")
            return
        stamp = timezone.localtime().strftime("[%H:%M:%S] ").encode()
        out = bytearray()
        for piece in data.splitlines(keepends=True):
            if self.at_line_start:
                out += stamp
            out += piece
            self.at_line_start = piece.endswith(b"\n")
        self.writer.write(bytes(out))

    # --- checks while the script runs ---------------------------------------------------------
    def _should_abort(self) -> str:
        row = (
            Build.objects.filter(pk=self.build.pk)
            .values_list("abort_requested", "aborted_by", "status")
            .first()
        )
        if row and row[0]:
            return f"Aborted by {row[1] or 'SYSTEM'}"
        if row is None or row[2] == Build.Status.FINISHED:
            # The lost-build sweep gave up on us (no heartbeat for too long) and freed the
            # executor: the script must not go on running on a slot given to another build.
            return "Steward lost contact with the build; stopping it"
        timeout = self.build.job.stuck_timeout_minutes
        if timeout and time.monotonic() - self.started > timeout * SECONDS_PER_MINUTE:
            return f"Build timed out (after {timeout} minutes). Marking the build as aborted."
        if worker_state.should_stop is not None or worker_state.should_terminate is not None:
            return "Steward is shutting down: the build was interrupted"
        return ""

    def _heartbeat(self) -> None:
        if time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS:
            Build.objects.filter(pk=self.build.pk).update(heartbeat_at=timezone.now())
            self.last_heartbeat = time.monotonic()

    # --- one step -----------------------------------------------------------------------------
    def run_step(self, connection, spec: dict) -> tuple[str, int | None]:
        """Returns ("exit", code) / ("aborted", code) / ("error", None) / ("lost", None)."""
        process = connection.open_agent(["run"])
        decoder = protocol.FrameDecoder()
        try:
            process.write(protocol.encode_json(protocol.SPEC, spec))
            last_check = 0.0
            abort_deadline = None
            while True:
                data = process.read(65536, timeout=CHECK_SECONDS)
                if data == b"":
                    return "lost", None
                if data:
                    for frame in decoder.feed(data):
                        if frame.type == protocol.OUTPUT:
                            self.output(frame.payload)
                        elif frame.type == protocol.EXIT:
                            info = frame.json()
                            kind = (
                                "aborted"
                                if info.get("reason") in (protocol.ABORTED, protocol.TIMED_OUT)
                                else "exit"
                            )
                            return kind, int(info.get("code") or 0)
                        elif frame.type == protocol.ERROR:
                            self.line(
                                f"ERROR: {frame.json().get('message', 'the agent could not run the step')}"
                            )
                            return "error", None
                now = time.monotonic()
                if now - last_check >= CHECK_SECONDS:
                    last_check = now
                    self._heartbeat()
                    if not self.abort_sent:
                        reason = self._should_abort()
                        if reason:
                            self.abort_reason = reason
                            self.abort_sent = True
                            abort_deadline = now + ABORT_GRACE_SECONDS
                            process.write(protocol.encode_json(protocol.ABORT, {"reason": reason}))
                    elif abort_deadline is not None and now > abort_deadline:
                        return "aborted", None
        except (OSError, EOFError, protocol.ProtocolError) as exc:
            self.line(f"ERROR: the connection to the agent failed: {exc}")
            return "lost", None
        finally:
            process.close()


def execute(build_id: int) -> str:
    now = timezone.now()
    worker = f"{socket.gethostname()} (pid {os.getpid()}, {threading.current_thread().name})"
    claimed = Build.objects.filter(pk=build_id, status=Build.Status.PENDING).update(
        status=Build.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker
    )
    if not claimed:
        return "not claimed"
    build = Build.objects.select_related("job", "node").get(pk=build_id)
    services.announce(
        services.EXECUTORS_GROUP, services.build_group(build_id), event="running", build=build_id
    )
    run = BuildRun(build)
    result = Result.FAILURE
    try:
        result = _run(build, run)
    except Exception as exc:  # a bug must still finish the build and free its executor
        run.line(f"ERROR: {type(exc).__name__}: {exc}")
        result = Result.FAILURE
        raise
    finally:
        run.line(f"Finished: {result}")
        try:
            run.writer.close()
        except RuntimeError:
            # A second writer: the lost-build sweep wrote the end of this log when it gave up
            # on the build, and that end stands. Anything else is a bug to report.
            if not Build.objects.filter(pk=build_id, status=Build.Status.FINISHED).exists():
                services.finish_build(build_id, result)
                raise
        services.finish_build(build_id, result)
    return result


def _run(build: Build, run: BuildRun) -> str:
    for text in services.cause_lines(build.causes):
        run.line(text)
    node = build.node
    if node is None:
        run.line("ERROR: the node this build was assigned to no longer exists")
        return Result.FAILURE
    if build.abort_requested:
        run.line(f"Aborted by {build.aborted_by or 'SYSTEM'}")
        return Result.ABORTED
    root = (node.agent_info or {}).get("remote_root") or node.remote_fs
    # Allocated when the executor was claimed (services.allocate_workspace).
    workspace = build.workspace or workspace_for(build, root)
    Build.objects.filter(pk=build.pk).update(workspace=workspace)
    if node.is_builtin:
        run.line(f"Building on the built-in node in workspace {workspace}")
    else:
        run.line(f"Building remotely on {node.name} in workspace {workspace}")
    try:
        connection = pool.get(node)
    except AgentError as exc:
        run.line(f"ERROR: cannot reach the agent on {node.display_name}: {exc}")
        node_services.connection_lost(node.pk, str(exc))
        return Result.FAILURE
    env = environment(build, workspace)
    if build.job.delete_workspace:
        run.line("[WS-CLEANUP] Deleting project workspace...")
        spec = protocol.make_spec(
            root, f"rm -rf -- {shlex.quote(workspace)}", shell=["/bin/sh", "-e"], env=env
        )
        kind, code = run.run_step(connection, spec)
        if kind != "exit" or code != 0:
            run.line("ERROR: could not delete the workspace")
            return Result.FAILURE
        run.line("[WS-CLEANUP] Done")
    steps = [s for s in build.job.steps if s.get("type", "shell") == "shell"]
    if not steps:
        return Result.SUCCESS
    for step in steps:
        spec = protocol.make_spec(workspace, step.get("command", ""), env=env)
        kind, code = run.run_step(connection, spec)
        if kind == "aborted" or run.abort_sent:
            run.line(run.abort_reason or "Aborted")
            return Result.ABORTED
        if kind == "lost":
            cause = f"the connection to {node.display_name} was lost during the build"
            run.line(f"ERROR: {cause}")
            if _connection_died(connection):
                node_services.connection_lost(
                    node.pk, "the agent connection dropped during a build"
                )
            return Result.FAILURE
        if kind == "error":
            return Result.FAILURE
        unstable = step.get("unstable_return")
        if unstable is not None and code == int(unstable):
            run.line(f"Build step 'Execute shell' marked build as unstable (exit code {code})")
            return Result.UNSTABLE
        if code != 0:
            run.line("Build step 'Execute shell' marked build as failure")
            return Result.FAILURE
    return Result.SUCCESS


def _connection_died(connection, wait: float = 2.0) -> bool:
    """Whether the connection itself is dead after a step's channel closed unexpectedly.

    paramiko closes a transport's channels before it marks the transport inactive, so right
    after the channel's EOF the transport may still look alive for a moment: wait briefly.
    """
    deadline = time.monotonic() + wait
    while connection.is_alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
