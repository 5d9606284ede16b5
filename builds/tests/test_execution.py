"""Builds for real: the queue, the scheduler, a real Celery worker, real agents (the built-in
node's local agent, and SSH agents on a real sshd)."""

from __future__ import annotations

import time

import pytest

from builds import services
from builds.models import Build, Executor, Job, QueueItem
from console import logs
from console.models import LogStream
from nodes import services as node_services
from nodes.connections import pool
from nodes.models import Node

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    pool.close_all()


def online_builtin(executors: int = 2) -> Node:
    node = node_services.ensure_builtin_node()
    Node.objects.filter(pk=node.pk).update(num_executors=executors)
    node.refresh_from_db()
    node_services.request_launch(node)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        node.refresh_from_db()
        if node.connection == Node.Connection.CONNECTED:
            return node
        time.sleep(0.05)
    raise AssertionError(f"built-in node not online: {node.connection_cause}")


def make_job(
    name="hello", command="echo hello from $JOB_NAME build $BUILD_NUMBER", **fields
) -> Job:
    fields.setdefault("quiet_period", 0)
    return Job.objects.create(name=name, steps=[{"type": "shell", "command": command}], **fields)


def wait_finished(job: Job, number: int = 1, timeout: float = 30) -> Build:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build = Build.objects.filter(job=job, number=number).first()
        if build is not None and build.status == Build.Status.FINISHED:
            return build
        time.sleep(0.05)
    build = Build.objects.filter(job=job, number=number).first()
    raise AssertionError(
        f"build not finished: {build and build.status}; log:\n{console_text(build)}"
    )


def console_text(build: Build | None) -> str:
    if build is None:
        return ""
    stream = LogStream.objects.filter(key=build.log_key).first()
    return b"".join(logs.iter_bytes(stream.pk)).decode() if stream else ""


def test_a_build_runs_on_the_built_in_node(celery_worker, admin):
    online_builtin()
    job = make_job()
    item, created = services.schedule_build(job, services.user_cause(admin))
    assert created
    build = wait_finished(job)
    text = console_text(build)
    assert build.result == "SUCCESS", text
    assert text.startswith("Started by user admin\n")
    assert "Building on the built-in node in workspace " in text
    assert "hello from hello build 1" in text
    assert text.rstrip().endswith("Finished: SUCCESS")
    assert not Executor.objects.filter(build__isnull=False).exists()
    item.refresh_from_db()
    assert item.state == QueueItem.State.LEFT and item.build_id == build.pk


def test_failure_and_exit_code(celery_worker):
    online_builtin()
    job = make_job("fails", "echo about to fail; exit 3")
    services.schedule_build(job, "Started by timer")
    build = wait_finished(job)
    text = console_text(build)
    assert build.result == "FAILURE"
    assert "Build step 'Execute shell' marked build as failure" in text


def test_unstable_exit_code(celery_worker):
    online_builtin()
    job = Job.objects.create(
        name="flaky",
        quiet_period=0,
        steps=[{"type": "shell", "command": "exit 7", "unstable_return": 7}],
    )
    services.schedule_build(job, "Started by timer")
    assert wait_finished(job).result == "UNSTABLE"


def test_abort_kills_the_running_build_within_two_seconds(celery_worker, admin):
    online_builtin()
    job = make_job("long", "echo started; sleep 60")
    services.schedule_build(job, services.user_cause(admin))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        build = Build.objects.filter(job=job, number=1).first()
        if build and "started" in console_text(build):
            break
        time.sleep(0.05)
    asked = time.monotonic()
    assert services.abort_build(build, admin)
    build = wait_finished(job, timeout=10)
    took = time.monotonic() - asked
    assert build.result == "ABORTED", console_text(build)
    assert took < 3.0, f"abort took {took:.2f} s"
    assert "Aborted by admin" in console_text(build)


def test_duplicate_requests_fold_into_the_queued_item(db):
    job = make_job("folded", quiet_period=60)
    first, created = services.schedule_build(job, "Started by user admin")
    second, created_again = services.schedule_build(job, "Started by user admin")
    third, _ = services.schedule_build(job, "Started by timer")
    assert created and not created_again
    assert first.pk == second.pk == third.pk
    item = QueueItem.objects.get(pk=first.pk)
    assert services.cause_lines(item.causes) == [
        "Started by user admin (2 times)",
        "Started by timer",
    ]
    assert services.cancel_item(item.pk)
    assert not services.cancel_item(item.pk)


def test_why_a_queued_item_waits(db):
    node_services.ensure_builtin_node()
    job = make_job("nowhere", label_expression="gpu")
    item, _ = services.schedule_build(job, "Started by timer")
    services.run_scheduler()
    item.refresh_from_db()
    assert item.why == "There are no nodes with the label ‘gpu’"
    assert item.state == QueueItem.State.BUILDABLE


def test_non_concurrent_job_waits_for_its_running_build(celery_worker):
    online_builtin(executors=2)
    job = make_job("serial", "sleep 1.5")
    services.schedule_build(job, "Started by timer")
    deadline = time.monotonic() + 10
    while not Build.objects.filter(job=job, status=Build.Status.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    item, created = services.schedule_build(job, "Started by timer")
    assert created
    services.run_scheduler()
    item.refresh_from_db()
    assert item.why.startswith("Build #1 is already in progress"), item.why
    assert wait_finished(job, 2, timeout=20).result == "SUCCESS"


def test_the_environment_of_a_build(celery_worker):
    node = online_builtin()
    Node.objects.filter(pk=node.pk).update(env_vars=[{"name": "FARM", "value": "north"}])
    job = make_job(
        "env",
        "echo N=$NODE_NAME J=$JENKINS_URL W=$WORKSPACE F=$FARM T=$BUILD_TAG E=$EXECUTOR_NUMBER",
    )
    services.schedule_build(job, "Started by timer")
    build = wait_finished(job)
    text = console_text(build)
    assert "N=built-in" in text
    assert "F=north" in text
    assert "T=steward-env-1" in text
    assert f"W={build.workspace}" in text and build.workspace.endswith("/workspace/env")
    assert "E=0" in text


def test_lost_builds_are_failed_and_their_executor_freed(db):
    node = node_services.ensure_builtin_node()
    job = make_job("lost")
    build = Build.objects.create(
        job=job,
        number=1,
        node=node,
        node_name=node.url_name,
        executor_number=1,
        status=Build.Status.RUNNING,
    )
    services.sync_executors([node])
    Executor.objects.filter(node=node, number=1).update(build=build)
    from django.utils import timezone

    Build.objects.filter(pk=build.pk).update(
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=120), started_at=timezone.now()
    )
    assert services.lost_builds_sweep() == 1
    build.refresh_from_db()
    assert build.result == "FAILURE"
    assert "lost contact with the build" in console_text(build)
    assert not Executor.objects.filter(build__isnull=False).exists()


def test_a_stuck_build_is_aborted_by_its_timeout(celery_worker, monkeypatch):
    from builds import execution

    monkeypatch.setattr(execution, "SECONDS_PER_MINUTE", 1.0)  # "minutes" of one second
    online_builtin()
    job = make_job("stuck", "echo waiting forever; sleep 60", stuck_timeout_minutes=2)
    started = time.monotonic()
    services.schedule_build(job, "Started by timer")
    build = wait_finished(job, timeout=20)
    text = console_text(build)
    assert build.result == "ABORTED", text
    assert "Build timed out (after 2 minutes). Marking the build as aborted." in text
    assert time.monotonic() - started < 10


def test_work_waiting_for_a_disconnected_built_in_node_launches_it(celery_worker):
    node = node_services.ensure_builtin_node()
    assert node.connection == Node.Connection.DISCONNECTED
    job = make_job("wakes-builtin")
    services.schedule_build(job, "Started by timer")
    build = wait_finished(job)
    assert build.result == "SUCCESS", console_text(build)
    node.refresh_from_db()
    assert node.connection == Node.Connection.CONNECTED


def test_controller_memory_does_not_grow_with_the_log(celery_worker):
    """30 MB of output pass through the worker in batches: its peak allocation stays small,
    and the log is stored whole, in a few hundred chunks rather than one row per line."""
    import tracemalloc

    from console.models import LogChunk

    online_builtin()
    job = make_job(
        "big-log", "set +x; head -c 30000000 /dev/zero | tr '\\0' 'x' | fold -w 99; echo done"
    )
    tracemalloc.start()
    try:
        services.schedule_build(job, "Started by timer")
        build = wait_finished(job, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert build.result == "SUCCESS"
    stream = LogStream.objects.get(key=build.log_key)
    assert stream.size > 30_000_000
    chunks = LogChunk.objects.filter(stream=stream).count()
    assert chunks < 2000, f"{chunks} chunks: not batched"
    assert peak < 8 * 1024 * 1024, f"peak traced allocation {peak / 1e6:.1f} MB for a 30 MB log"
