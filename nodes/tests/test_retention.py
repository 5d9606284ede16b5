"""Availability "Bring this agent online when in demand, and take offline when idle": the
function the builds app calls when work waits, the idle sweep, and the scheduler using both."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from builds import services as build_services
from builds.models import Build, Executor, Job
from nodes import services
from nodes.connections import pool
from nodes.models import Node

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    pool.close_all()


def demand_node(agent_pyz, tmp_path, name="on-demand", **fields) -> Node:
    fields.setdefault("in_demand_delay", 0)
    fields.setdefault("idle_delay", 1)
    return Node.objects.create(
        name=name,
        remote_fs=str(tmp_path / name),
        launcher="command",
        num_executors=1,
        label_string="burst",
        retention=Node.Retention.DEMAND,
        launcher_config={"command": f"{sys.executable} {agent_pyz}"},
        **fields,
    )


def wait_connected(node: Node, timeout: float = 20) -> Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.refresh_from_db()
        if node.connection == Node.Connection.CONNECTED:
            return node
        time.sleep(0.05)
    raise AssertionError(f"{node.name} is {node.connection}: {node.connection_cause}")


def test_demand_launches_an_offline_demand_node(celery_worker, agent_pyz, tmp_path):
    node = demand_node(agent_pyz, tmp_path)
    assert services.request_demand(node)
    wait_connected(node)
    # Only demand nodes are launched this way.
    keep_online = Node.objects.create(name="always", launcher="command", remote_fs=str(tmp_path))
    assert not services.request_demand(keep_online)


def test_demand_waits_for_the_in_demand_delay(celery_worker, agent_pyz, tmp_path):
    node = demand_node(agent_pyz, tmp_path, in_demand_delay=1)
    assert not services.request_demand(node)  # demand starts now; one minute to wait
    node.refresh_from_db()
    assert node.connection == Node.Connection.DISCONNECTED and node.demand_since is not None
    Node.objects.filter(pk=node.pk).update(demand_since=timezone.now() - timedelta(seconds=61))
    assert services.request_demand(node)
    node = wait_connected(node)
    assert node.demand_since is None


def test_idle_demand_nodes_go_offline_after_the_idle_delay(celery_worker, agent_pyz, tmp_path):
    node = demand_node(agent_pyz, tmp_path, idle_delay=2)
    services.request_demand(node)
    node = wait_connected(node)
    assert services.take_idle_demand_nodes_offline() == 0  # idle for less than two minutes
    Node.objects.filter(pk=node.pk).update(idle_since=timezone.now() - timedelta(minutes=3))
    assert services.take_idle_demand_nodes_offline() == 1
    node.refresh_from_db()
    assert node.connection == Node.Connection.DISCONNECTED
    assert node.offline == Node.Offline.IDLE
    assert node.connection_cause == services.IDLE_CAUSE
    assert pool.peek(node.pk) is None
    # Demand brings it back, clearing the idle mark.
    assert services.request_demand(node)
    node = wait_connected(node)
    assert node.offline == Node.Offline.NONE


def test_a_busy_demand_node_is_not_idle(celery_worker, agent_pyz, tmp_path):
    node = demand_node(agent_pyz, tmp_path, idle_delay=1)
    services.request_demand(node)
    node = wait_connected(node)
    job = Job.objects.create(name="busy", quiet_period=0)
    build = Build.objects.create(
        job=job,
        number=1,
        node=node,
        node_name=node.name,
        executor_number=1,
        status=Build.Status.RUNNING,
    )
    build_services.sync_executors([node])
    Executor.objects.filter(node=node, number=1).update(build=build)
    Node.objects.filter(pk=node.pk).update(idle_since=timezone.now() - timedelta(minutes=5))
    assert services.take_idle_demand_nodes_offline() == 0
    node.refresh_from_db()
    assert node.connection == Node.Connection.CONNECTED


def test_waiting_work_brings_a_demand_node_online_and_runs(celery_worker, agent_pyz, tmp_path):
    demand_node(agent_pyz, tmp_path)
    job = Job.objects.create(
        name="burst-job",
        quiet_period=0,
        label_expression="burst",
        steps=[{"type": "shell", "command": "echo ran on $NODE_NAME"}],
    )
    build_services.schedule_build(job, "Started by timer")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        build = Build.objects.filter(job=job, status=Build.Status.FINISHED).first()
        if build:
            break
        build_services.run_scheduler()  # the periodic sweep's part
        time.sleep(0.2)
    assert build is not None, "the build never ran"
    assert build.result == "SUCCESS"
    assert build.node_name == "on-demand"
