"""Several schedulers at once never double-book: many queue items, few executor slots, and
``run_scheduler`` started in four threads (each with its own database connection) at the same
moment, round after round. Runs on the configured database (SQLite with IMMEDIATE
transactions in ``make test``) and, marked ``scaled``, on PostgreSQL in ``make test-scaled``.

No worker runs the builds here: the slots stay claimed while the test counts them.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

import pytest
from django.db import connection, connections

from builds import services
from builds.models import Build, Executor, Job, QueueItem
from nodes import services as node_services
from nodes.models import Node

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 4
ROUNDS = 12
JOBS = 40
NODES = 5
EXECUTORS = 3


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """Build ids handed to the worker, which is not running: nothing starts them."""
    handed: list[int] = []
    lock = threading.Lock()

    def enqueue(build_id: int) -> None:
        with lock:
            handed.append(build_id)

    monkeypatch.setattr(services, "_enqueue_build", enqueue)
    monkeypatch.setattr(services, "_kick_scheduler", lambda *args: None)
    return handed


class Schedulers:
    """Four threads that each run the scheduler when the test says go, all at once."""

    def __init__(self, count: int) -> None:
        self.start = threading.Barrier(count + 1)
        self.done = threading.Barrier(count + 1)
        self.results: list[list[int]] = [[] for _ in range(count)]
        self.errors: list[BaseException] = []
        self.stop = False
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"scheduler-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        try:
            while True:
                self.start.wait(30)
                if self.stop:
                    return
                # Slightly staggered starts: one scheduler reads the queue before another's
                # claim commits and the free slots after it (the interleaving that would
                # double-book a slot without the conditional UPDATE).
                time.sleep(rng.uniform(0, 0.02))
                try:
                    self.results[index] = services.run_scheduler()
                except BaseException as exc:  # reported by the test thread
                    self.errors.append(exc)
                    self.results[index] = []
                self.done.wait(30)
        finally:
            connections.close_all()

    def round(self) -> list[list[int]]:
        self.start.wait(30)
        self.done.wait(60)
        if self.errors:
            raise self.errors[0]
        return [list(r) for r in self.results]

    def close(self) -> None:
        self.stop = True
        self.start.wait(30)
        for thread in self.threads:
            thread.join(10)


def run_rounds(enqueued: list[int]) -> None:
    rng = random.Random(20241129)
    # The built-in node takes no part: without executors it is neither used nor launched on
    # demand (work waiting for a disconnected built-in node would start it).
    builtin = node_services.ensure_builtin_node()
    Node.objects.filter(pk=builtin.pk).update(num_executors=0)
    nodes = [
        Node.objects.create(
            name=f"c{i}", num_executors=EXECUTORS, launcher="ssh", remote_fs=f"/srv/c{i}",
            connection=Node.Connection.CONNECTED, agent_info={"remote_root": f"/srv/c{i}"},
        )
        for i in range(1, NODES + 1)
    ]  # fmt: skip
    services.sync_executors(list(Node.objects.all()))
    jobs = [
        Job.objects.create(name=f"job-{i:02d}", quiet_period=0, concurrent_build=True,
                           steps=[{"type": "shell", "command": "true"}])
        for i in range(JOBS)
    ]  # fmt: skip
    online = {node.pk for node in nodes}
    schedulers = Schedulers(THREADS)
    total_started = 0
    try:
        for round_number in range(ROUNDS):
            # Every job wants a build (more items than slots); some running builds end.
            for job in jobs:
                services.schedule_build(job, "Started by timer")
            running = list(
                Build.objects.filter(status=Build.Status.PENDING).values_list("pk", flat=True)
            )
            for build_id in rng.sample(
                running, k=len(running) // 2 if round_number % 3 else len(running)
            ):
                services.finish_build(build_id, Build.Result.SUCCESS)
            free = Executor.objects.filter(node_id__in=online, build__isnull=True).count()
            before = set(Build.objects.values_list("pk", flat=True))
            assert free > 0

            results = schedulers.round()

            started = [build_id for result in results for build_id in result]
            new = set(Build.objects.values_list("pk", flat=True)) - before
            assert len(started) == len(set(started)), f"a build was reported twice: {results}"
            assert set(started) == new
            assert len(new) == free, (
                f"round {round_number}: {len(new)} builds started for {free} free slots"
            )
            total_started += len(new)
            check_invariants(online)
    finally:
        schedulers.close()

    # Every build was handed to the worker exactly once.
    assert Counter(enqueued) == Counter(Build.objects.values_list("pk", flat=True))
    assert len(enqueued) == total_started
    # Build numbers are unique and without gaps per job.
    numbers: dict[int, list[int]] = defaultdict(list)
    for job_id, number in Build.objects.values_list("job_id", "number"):
        numbers[job_id].append(number)
    for job_id, found in numbers.items():
        assert sorted(found) == list(range(1, len(found) + 1)), (job_id, sorted(found))
    assert total_started > ROUNDS * 2


def check_invariants(online: set[int]) -> None:
    slots = list(
        Executor.objects.filter(build__isnull=False).values_list("node_id", "number", "build_id")
    )
    holders = Counter(build_id for _, _, build_id in slots)
    assert all(count == 1 for count in holders.values()), f"a build holds two slots: {holders}"
    assert all(node_id in online for node_id, _, _ in slots), "an offline node's slot was used"
    pending = dict(
        (pk, (node_id, number))
        for pk, node_id, number in Build.objects.filter(status=Build.Status.PENDING).values_list(
            "pk", "node_id", "executor_number"
        )
    )
    assert {build_id: (node_id, number) for node_id, number, build_id in slots} == pending
    # Each build came from exactly one queue item, and each item produced at most one build.
    sources = Counter(
        QueueItem.objects.filter(build__isnull=False).values_list("build_id", flat=True)
    )
    assert set(sources) == set(Build.objects.values_list("pk", flat=True))
    assert all(count == 1 for count in sources.values())
    assert not QueueItem.objects.filter(
        state=QueueItem.State.LEFT, build__isnull=True, cancelled=False
    ).exists()
    live = Counter(
        QueueItem.objects.filter(state__in=QueueItem.LIVE_STATES).values_list("job_id", flat=True)
    )
    assert all(count == 1 for count in live.values()), f"a job is twice in the queue: {live}"


def test_concurrent_schedulers_never_double_book(enqueued):
    run_rounds(enqueued)


@pytest.mark.scaled
def test_concurrent_schedulers_never_double_book_on_postgresql(enqueued):
    if connection.vendor != "postgresql":
        pytest.fail(
            "This test needs PostgreSQL (the scaled configuration): run `make test-scaled`, or "
            "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward (and REDIS_URL, "
            f"STEWARD_SECRET_KEY). The database here is {connection.vendor}."
        )
    run_rounds(enqueued)
