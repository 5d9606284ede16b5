"""A small build farm for real: two SSH agents on real sshd servers (2 executors each), the
built-in node, a real Celery worker and the real agent program. Builds are requested the way
users press "Build Now" again and again; the test watches the executor rows while they run."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta

import pytest

from builds import services
from builds.models import Build, Executor, QueueItem
from builds.tests.farmkit import (
    ACTIVE,
    agent_key_credential,
    console_text,
    launch,
    make_job,
    online_builtin,
    remote_roots,
    ssh_node,
    wait_build,
)
from nodes.connections import pool
from nodes.models import Node
from nodes.tests.conftest import (
    agent_user,
    client_key,
    encrypted_client_key,
    sshd_factory,
)

pytestmark = pytest.mark.django_db(transaction=True)
# pytest finds fixtures among a module's names: the real sshd and keys of the nodes tests.
FIXTURES = (agent_user, client_key, encrypted_client_key, sshd_factory, remote_roots)


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    pool.close_all()


SCRIPT = 'echo "ran $JOB_NAME #$BUILD_NUMBER on $NODE_NAME in $PWD"; sleep 1'


class ExecutorWatch:
    """Samples the executor slots and the active builds; each sample is one SELECT, so it is
    one consistent snapshot of the database."""

    def __init__(self, nodes: list[Node]) -> None:
        self.capacity = {node.pk: node.num_executors for node in nodes}
        self.names = {node.pk: node.name for node in nodes}
        self.samples = 0
        self.peak: dict[int, int] = defaultdict(int)

    def sample(self) -> None:
        busy: dict[int, int] = defaultdict(int)
        seen: dict[int, tuple[int, int]] = {}
        rows = Executor.objects.values_list(
            "node_id", "number", "build_id", "build__node_id", "build__executor_number",
            "build__status",
        )  # fmt: skip
        for node_id, number, build_id, build_node, build_number, status in rows:
            if build_id is None:
                continue
            assert build_id not in seen, (
                f"build {build_id} holds two slots: {seen[build_id]} and {(node_id, number)}"
            )
            seen[build_id] = (node_id, number)
            assert (build_node, build_number) == (node_id, number), (
                f"slot #{number} of node {node_id} holds build {build_id} of "
                f"executor #{build_number} of node {build_node}"
            )
            assert status in ACTIVE, f"slot #{number} of node {node_id} holds a {status} build"
            busy[node_id] += 1
        for node_id, count in busy.items():
            limit = self.capacity.get(node_id, 0)
            assert count <= limit, f"{self.names.get(node_id)}: {count} busy of {limit} executors"
            self.peak[node_id] = max(self.peak[node_id], count)
        # Every build in progress holds exactly one slot, on its own node.
        for pk, node_id, number, slot_node, slot_number in Build.objects.filter(
            status__in=ACTIVE
        ).values_list("pk", "node_id", "executor_number", "executor__node_id", "executor__number"):
            assert (slot_node, slot_number) == (node_id, number), (
                f"build {pk} on executor #{number} of node {node_id} holds slot "
                f"{(slot_node, slot_number)}"
            )
        self.samples += 1


def test_two_agents_run_ten_builds_on_the_right_nodes(celery_worker, sshd_factory, client_key,
                                                       remote_roots):  # fmt: skip
    agent_key_credential(client_key)
    first, second = sshd_factory(), sshd_factory()
    root_a, root_b = remote_roots(), remote_roots()
    node_a = launch(ssh_node(first, root_a, "agent-a", labels="linux a"))
    node_b = launch(ssh_node(second, root_b, "agent-b", labels="linux b"))
    jobs = {
        make_job("alpha", SCRIPT, label_expression="a", concurrent_build=True): 4,
        make_job("beta", SCRIPT, label_expression="b", concurrent_build=True): 3,
        make_job("gamma", SCRIPT, label_expression="linux", concurrent_build=True): 3,
    }
    watch = ExecutorWatch([node_a, node_b])  # the built-in node is offline: no slot of it
    requested = dict.fromkeys(jobs, 0)
    deadline = time.monotonic() + 60
    # "Build Now" again as soon as the previous request left the queue (a request for a job
    # already in the queue would fold into it).
    while True:
        for job, wanted in jobs.items():
            if (
                requested[job] < wanted
                and not QueueItem.objects.filter(job=job, state__in=QueueItem.LIVE_STATES).exists()
            ):
                services.schedule_build(job, "Started by user admin")
                requested[job] += 1
        watch.sample()
        done = Build.objects.filter(status=Build.Status.FINISHED).count()
        if done == 10 and requested == jobs:
            break
        assert time.monotonic() < deadline, f"only {done} of 10 builds finished"
        time.sleep(0.02)
    watch.sample()

    builds = list(Build.objects.select_related("job").order_by("created_at"))
    assert len(builds) == 10
    roots = {"agent-a": str(root_a), "agent-b": str(root_b)}
    allowed = {"alpha": {"agent-a"}, "beta": {"agent-b"}, "gamma": {"agent-a", "agent-b"}}
    for build in builds:
        text = console_text(build)
        assert build.result == "SUCCESS", text
        assert build.node_name in allowed[build.job.name], f"{build} ran on {build.node_name}"
        workspace = build.workspace
        assert workspace.startswith(f"{roots[build.node_name]}/workspace/{build.job.name}")
        assert f"Building remotely on {build.node_name} in workspace {workspace}\n" in text
        assert f"ran {build.job.name} #{build.number} on {build.node_name} in {workspace}\n" in text
        assert text.rstrip().endswith("Finished: SUCCESS")
    # Build numbers count up per job.
    for job, wanted in jobs.items():
        numbers = sorted(b.number for b in builds if b.job_id == job.pk)
        assert numbers == list(range(1, wanted + 1))

    # Jenkins' workspace rule: a build gets <job> unless a build of the same job on the same
    # node is using it, then <job>@2, @3 … The claim sees the other build as running until its
    # end is committed, a moment after the end time it records: allow that moment.
    overlapped = 0
    margin = timedelta(seconds=1)

    def lowest_free(build, busy) -> str:
        base = f"{roots[build.node_name]}/workspace/{build.job.name}"
        return next(ws for ws in [base] + [f"{base}@{n}" for n in range(2, 10)] if ws not in busy)

    for build in builds:
        same = [
            other for other in builds
            if other.pk != build.pk and other.job_id == build.job_id
            and other.node_id == build.node_id and other.created_at < build.created_at
        ]  # fmt: skip
        busy = [o.workspace for o in same if build.created_at < o.finished_at]
        maybe_busy = [o.workspace for o in same if build.created_at < o.finished_at + margin]
        assert build.workspace in {lowest_free(build, busy), lowest_free(build, maybe_busy)}, (
            build, build.workspace, busy, maybe_busy,
        )  # fmt: skip
        # Never shared: no build that really overlapped used the same workspace.
        assert build.workspace not in busy, (build, build.workspace, busy)
        overlapped += bool(busy)
    assert overlapped, "no two builds of one job ran at the same time on one node"
    assert Build.objects.filter(workspace__endswith="/workspace/alpha@2").exists()

    # Both agents really ran two builds at once, and every slot is free at the end.
    assert watch.peak[node_a.pk] == 2 and watch.peak[node_b.pk] == 2, dict(watch.peak)
    assert watch.samples > 50
    assert not Executor.objects.filter(build__isnull=False).exists()
    assert not QueueItem.objects.filter(state__in=QueueItem.LIVE_STATES).exists()


def test_the_built_in_node_runs_a_job_when_the_agents_are_busy(celery_worker, sshd_factory,
                                                              client_key, remote_roots):  # fmt: skip
    agent_key_credential(client_key)
    agent = launch(ssh_node(sshd_factory(), remote_roots(), "agent-a", labels="linux a"))
    plain = make_job("plain", 'echo "plain on $NODE_NAME"', concurrent_build=True)

    # With only the agent online, the job without a label runs there (and so prefers it
    # next time: its workspace is warm).
    services.schedule_build(plain, "Started by user admin")
    first = wait_build(plain, 1)
    assert (first.result, first.node_name) == ("SUCCESS", "agent-a"), console_text(first)

    builtin = online_builtin(executors=1)
    hold = make_job("hold", "echo holding; sleep 30", label_expression="a", concurrent_build=True)
    for number in (1, 2):
        services.schedule_build(hold, "Started by user admin")
        wait_build(hold, number, status=Build.Status.RUNNING, text="holding")
    busy = Executor.objects.filter(node=agent, build__isnull=False).count()
    assert busy == agent.num_executors == 2

    services.schedule_build(plain, "Started by user admin")
    second = wait_build(plain, 2)
    text = console_text(second)
    assert second.result == "SUCCESS", text
    assert second.node_id == builtin.pk and second.node_name == "(built-in)"
    assert "Building on the built-in node in workspace " in text
    assert "plain on built-in" in text

    for build in Build.objects.filter(job=hold):
        services.abort_build(build)
    wait_build(hold, 1, timeout=10)
    wait_build(hold, 2, timeout=10)
    assert not Executor.objects.filter(build__isnull=False).exists()
