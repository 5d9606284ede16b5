"""The dashboard's job list, the Build Queue and Build Executor Status widgets, Jenkins' queue
endpoints (cancelItem, /queue/api/json) and the widgets' WebSocket."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from builds import services, widgets
from builds.models import Build, Executor, Job, QueueItem
from console.routing import websocket_urlpatterns
from console.testing import make_persona
from nodes.models import Node

Status = Build.Status
Result = Build.Result


# --- factories (one object each) --------------------------------------------------------------


def make_job(name: str = "alpha", **fields) -> Job:
    fields.setdefault("quiet_period", 0)
    return Job.objects.create(name=name, steps=[{"type": "shell", "command": "true"}], **fields)


def make_node(name: str = "agent1", **fields) -> Node:
    fields.setdefault("connection", Node.Connection.CONNECTED)
    fields.setdefault("num_executors", 2)
    fields.setdefault("launcher", "ssh")
    return Node.objects.create(name=name, remote_fs="/srv/agent", **fields)


def make_build(
    job: Job,
    number: int,
    result: str = "",
    *,
    ago: float = 600,
    duration: float | None = 60,
    node: Node | None = None,
) -> Build:
    """A build started ``ago`` seconds ago: finished with ``result`` (after ``duration``), or
    running when ``result`` is empty."""
    started = timezone.now() - timedelta(seconds=ago)
    finished = bool(result)
    return Build.objects.create(
        job=job, number=number, node=node,
        status=Status.FINISHED if finished else Status.RUNNING,
        result=result, started_at=started,
        finished_at=started + timedelta(seconds=duration or 0) if finished else None,
        duration_ms=int(duration * 1000) if finished and duration is not None else None,
    )  # fmt: skip


def occupy(node: Node, number: int, build: Build) -> Executor:
    """The executor slot as the scheduler leaves it when it starts ``build`` there."""
    executor, _ = Executor.objects.get_or_create(node=node, number=number)
    Executor.objects.filter(pk=executor.pk).update(build=build)
    return executor


def queue(
    job: Job,
    *,
    state: str = QueueItem.State.BUILDABLE,
    why: str = "",
    causes: list | None = None,
    waited: float = 5,
    due_in: float = 0,
) -> QueueItem:
    now = timezone.now()
    item = QueueItem.objects.create(
        job=job, state=state, why=why, due_at=now + timedelta(seconds=due_in),
        causes=causes or [{"text": "Started by user admin", "count": 1}],
    )  # fmt: skip
    QueueItem.objects.filter(pk=item.pk).update(in_queue_since=now - timedelta(seconds=waited))
    item.refresh_from_db()
    return item


def text_of(response) -> str:
    return unescape(response.content.decode())


def row(html: str, job_name: str) -> str:
    """The dashboard row of one job."""
    match = re.search(rf'<tr id="job_{re.escape(job_name)}".*?</tr>', html, re.S)
    assert match, f"no row for {job_name}"
    return match.group(0)


def node_block(html: str, url_name: str) -> str:
    """The part of the executors widget about one node."""
    for part in html.split('<div class="executor-node ')[1:]:
        if part.split(">", 1)[0].endswith(f'data-node="{url_name}"'):
            return part.split("</section>")[0]
    raise AssertionError(f"no executors of {url_name}")


@pytest.fixture
def nobody(db):
    return get_user_model().objects.create_user("nobody", password="x")


# --- the dashboard ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_jobs_the_dashboard_welcomes_and_offers_to_create_one(admin_client):
    text = text_of(admin_client.get("/"))
    assert "Welcome to Steward!" in text
    assert re.search(r'<a class="step" href="/newJob">.*?Create a job', text, re.S)
    assert 'id="projectstatus"' not in text
    # The widgets are there from the start.
    assert "Build Queue (0)" in text and "Build Executor Status" in text


@pytest.mark.django_db
def test_the_dashboard_lists_every_job_with_its_ball_and_last_runs(admin_client):
    alpha = make_job("alpha")
    make_build(alpha, 1, Result.FAILURE, ago=7200)
    make_build(alpha, 2, Result.SUCCESS, ago=3 * 3600 + 5 * 60, duration=3720)
    beta = make_job("beta")
    make_build(beta, 1, Result.FAILURE, ago=90, duration=12.3)
    gamma = make_job("gamma")
    make_build(gamma, 1, Result.UNSTABLE)
    delta = make_job("delta")
    make_build(delta, 1, Result.ABORTED)
    make_job("epsilon")
    zeta = make_job("zeta", disabled=True)
    make_build(zeta, 1, Result.SUCCESS)
    eta = make_job("eta")
    make_build(eta, 1, Result.SUCCESS, ago=400, duration=20)
    make_build(eta, 2, "", ago=5)  # building
    first = make_job("first")
    make_build(first, 1, "", ago=5)  # its first build is running

    text = text_of(admin_client.get("/"))
    names = re.findall(r'<tr id="job_([^"]+)"', text)
    assert names == ["alpha", "beta", "delta", "epsilon", "eta", "first", "gamma", "zeta"]

    alpha_row = row(text, "alpha")
    assert 'class="ball ball-blue"' in alpha_row and 'title="Success"' in alpha_row
    assert '<a class="job-name" href="/job/alpha/">alpha</a>' in alpha_row
    # Last Success "3 hr 5 min - #2", Last Failure "2 hr 0 min - #1", Last Duration "1 hr 2 min - #2".
    cells = re.findall(r'<td class="run-link"[^>]*>(.*?)</td>', alpha_row, re.S)
    assert re.sub(r"<[^>]+>", "", cells[0]) == "3 hr 5 min - #2"
    assert '<a href="/job/alpha/2/">#2</a>' in cells[0]
    assert re.sub(r"<[^>]+>", "", cells[1]) == "2 hr 0 min - #1"
    assert '<a href="/job/alpha/1/">#1</a>' in cells[1]
    assert re.sub(r"<[^>]+>", "", cells[2]) == "1 hr 2 min - #2"

    beta_row = row(text, "beta")
    assert 'ball ball-red"' in beta_row and 'title="Failed"' in beta_row
    cells = re.findall(r'<td class="run-link"[^>]*>(.*?)</td>', beta_row, re.S)
    assert "N/A" in cells[0]
    assert re.sub(r"<[^>]+>", "", cells[1]) == "1 min 30 sec - #1"
    assert re.sub(r"<[^>]+>", "", cells[2]) == "12 sec - #1"

    assert 'ball ball-yellow"' in row(text, "gamma") and 'title="Unstable"' in row(text, "gamma")
    assert 'ball ball-aborted"' in row(text, "delta") and 'title="Aborted"' in row(text, "delta")
    epsilon = row(text, "epsilon")
    assert 'ball ball-nobuilt"' in epsilon and 'title="Not built"' in epsilon
    assert epsilon.count("N/A") == 3
    zeta_row = row(text, "zeta")
    assert 'ball ball-disabled"' in zeta_row and 'title="Disabled"' in zeta_row
    # Animated while building, in the color of the last completed build.
    eta_row = row(text, "eta")
    assert 'ball ball-blue ball-anime"' in eta_row and 'title="In progress"' in eta_row
    assert 'ball ball-nobuilt ball-anime"' in row(text, "first")


@pytest.mark.django_db
def test_ball_colors_follow_jenkins():
    assert widgets.ball_color(disabled=False, last_result=None, building=False) == "nobuilt"
    assert widgets.ball_color(disabled=False, last_result="SUCCESS", building=True) == "blue_anime"
    assert widgets.ball_color(disabled=False, last_result="FAILURE", building=False) == "red"
    assert widgets.ball_color(disabled=False, last_result="NOT_BUILT", building=False) == "nobuilt"
    assert widgets.ball_color(disabled=True, last_result="SUCCESS", building=False) == "disabled"
    assert (
        widgets.ball_color(disabled=True, last_result="SUCCESS", building=True) == "disabled_anime"
    )
    assert widgets.ball_tooltip("red_anime") == "In progress"


@pytest.mark.django_db
def test_build_now_is_offered_to_those_who_may_build(operator_client, viewer):
    make_job("alpha")
    make_job("off", disabled=True)
    text = text_of(operator_client.get("/"))
    alpha = row(text, "alpha")
    assert '<form class="build-now" method="post" action="/job/alpha/build">' in alpha
    assert 'title="Schedule a Build for alpha"' in alpha
    assert "build-now" not in row(text, "off")  # a disabled job is not buildable

    operator_client.force_login(viewer)
    text = text_of(operator_client.get("/"))
    assert "alpha" in text and "build-now" not in row(text, "alpha")


@pytest.mark.django_db
def test_a_user_who_may_not_see_jobs_gets_neither_jobs_nor_widgets(client, nobody):
    make_job("secret-job")
    client.force_login(nobody)
    text = text_of(client.get("/"))
    assert "secret-job" not in text
    assert "Build Queue" not in text and "Build Executor Status" not in text
    for url in ("/widgets/buildQueue", "/widgets/executors", "/widgets/jobs", "/queue/api/json"):
        assert client.get(url).status_code == 403, url


def _farm(jobs: int) -> None:
    """``jobs`` jobs, each with a success, a failure and a running build on its own executor,
    and a queued request."""
    builtin = make_node("(built-in)", is_builtin=True, num_executors=jobs + 1, launcher="builtin")
    make_node("agent1")
    for index in range(jobs):
        job = make_job(f"job-{index:02d}")
        make_build(job, 1, Result.SUCCESS, node=builtin)
        make_build(job, 2, Result.FAILURE, node=builtin)
        occupy(builtin, index + 1, make_build(job, 3, "", ago=10, node=builtin))
        queue(job, why="Waiting for next available executor")


# session, user, permissions (user's, groups'), jobs, queue items, nodes, executors.
DASHBOARD_QUERIES = 8


@pytest.mark.django_db
@pytest.mark.parametrize("jobs", [1, 30])
def test_the_dashboard_reads_a_fixed_number_of_queries(
    operator_client, django_assert_num_queries, jobs
):
    _farm(jobs)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = operator_client.get("/")
    text = text_of(response)
    assert len(re.findall(r'<tr id="job_', text)) == jobs
    assert f"Build Queue ({jobs})" in text
    assert f"2 agents ({jobs} of {jobs + 1 + 2} executors busy)" in text


@pytest.mark.django_db
@pytest.mark.parametrize("jobs", [1, 30])
def test_the_widget_partials_read_a_fixed_number_of_queries(
    operator_client, django_assert_num_queries, jobs
):
    _farm(jobs)
    # session, user, permissions (user's, groups') + what the widget reads.
    with django_assert_num_queries(4 + 1):  # queue items
        assert operator_client.get("/widgets/buildQueue").status_code == 200
    with django_assert_num_queries(4 + 2):  # nodes, executors
        assert operator_client.get("/widgets/executors").status_code == 200
    with django_assert_num_queries(4 + 1):  # jobs
        assert operator_client.get("/widgets/jobs").status_code == 200
    with django_assert_num_queries(4 + 2):  # queue items, their jobs' colors
        assert operator_client.get("/queue/api/json").status_code == 200


# --- the Build Queue widget ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_empty_queue(admin_client):
    text = text_of(admin_client.get("/widgets/buildQueue"))
    assert "Build Queue (0)" in text
    assert "No builds in the queue." in text


@pytest.mark.django_db
def test_a_queued_item_shows_its_why_causes_and_wait(operator_client):
    job = make_job("gpu-job", label_expression="gpu")
    item = queue(job, why="There are no nodes with the label ‘gpu’", waited=75)
    text = text_of(operator_client.get("/widgets/buildQueue"))
    assert "Build Queue (1)" in text
    entry = re.search(r'<li class="queue-item.*?</li>', text, re.S)[0]
    assert '<a class="queue-item-name" href="/job/gpu-job/">gpu-job</a>' in entry
    assert "There are no nodes with the label ‘gpu’" in entry
    assert "Started by user admin" in entry
    assert "Waiting for 1 min 15 sec" in entry
    assert (
        'title="Started by user admin\nThere are no nodes with the label ‘gpu’\n'
        'Waiting for 1 min 15 sec"' in entry
    )
    # A label nobody has: Jenkins calls the item stuck at once.
    assert "queue-item state-buildable stuck" in entry
    assert f'hx-post="/queue/cancelItem?id={item.pk}"' in entry
    assert 'hx-confirm="Are you sure you want to cancel the queued run of gpu-job?"' in entry


@pytest.mark.django_db
def test_folded_requests_count_up(operator_client, operator):
    job = make_job("folded", quiet_period=30)
    first, created = services.schedule_build(job, services.user_cause(operator))
    again, created_again = services.schedule_build(job, services.user_cause(operator))
    assert created and not created_again and first.pk == again.pk
    text = text_of(operator_client.get("/widgets/buildQueue"))
    assert "Build Queue (1)" in text
    assert "Started by user olivia (2 times)" in text
    # Still in its quiet period: the time left is counted now, and again by the page's timer.
    match = re.search(
        r'<div class="queue-item-why" data-due="(\d+)">In the quiet period\. Expires in (\d+) sec</div>',
        text,
    )
    assert match and 25 <= int(match.group(2)) <= 30


@pytest.mark.django_db
def test_a_blocked_item_and_a_finished_quiet_period(admin_client):
    blocked = make_job("serial")
    queue(
        blocked, state=QueueItem.State.BLOCKED, why="Build #7 is already in progress (ETA: 12 sec)"
    )
    waiting = make_job("late")
    queue(
        waiting,
        state=QueueItem.State.WAITING,
        why="In the quiet period. Expires in 5 sec",
        due_in=-1,
    )
    text = text_of(admin_client.get("/widgets/buildQueue"))
    assert "Build Queue (2)" in text
    assert "queue-item state-blocked" in text
    assert "Build #7 is already in progress (ETA: 12 sec)" in text
    assert "Finished waiting" in text
    # Viewers see the queue but cannot cancel.


@pytest.mark.django_db
def test_viewers_see_the_queue_without_cancel_buttons(viewer_client):
    queue(make_job("alpha"), why="Waiting for next available executor")
    text = text_of(viewer_client.get("/widgets/buildQueue"))
    assert "Build Queue (1)" in text and "alpha" in text
    assert "cancelItem" not in text


@pytest.mark.django_db
def test_stuck_after_ten_times_the_estimate():
    job = make_job("slow")
    make_build(job, 1, Result.SUCCESS, duration=30)
    item = queue(job, why="Waiting for next available executor", waited=599)
    now = timezone.now()
    assert not widgets.is_stuck(item, 30_000, now)  # 10 × max(30 s, 60 s) = 600 s
    QueueItem.objects.filter(pk=item.pk).update(in_queue_since=now - timedelta(seconds=601))
    item.refresh_from_db()
    assert widgets.is_stuck(item, 30_000, now)
    assert not widgets.is_stuck(item, None, now)  # no estimate: only after 24 h
    assert widgets.build_queue().items[0].stuck


# --- cancelItem ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_item_follows_jenkins(operator_client):
    item = queue(make_job("alpha"), why="Waiting for next available executor")
    response = operator_client.post(f"/queue/cancelItem?id={item.pk}")
    assert response.status_code == 204
    item.refresh_from_db()
    assert item.state == QueueItem.State.LEFT and item.cancelled
    assert "No builds in the queue." in text_of(operator_client.get("/widgets/buildQueue"))

    again = operator_client.post(f"/queue/cancelItem?id={item.pk}")
    assert again.status_code == 422
    assert again.content.decode() == f"Item for id ({item.pk}) is not cancellable"

    missing = operator_client.post("/queue/cancelItem?id=98765")
    assert missing.status_code == 404
    assert missing.content.decode() == "Provided id (98765) not found"
    assert operator_client.post("/queue/cancelItem?id=abc").status_code == 404
    assert operator_client.get(f"/queue/cancelItem?id={item.pk}").status_code == 405


@pytest.mark.django_db
def test_viewers_may_not_cancel(viewer_client):
    item = queue(make_job("alpha"), why="Waiting for next available executor")
    response = viewer_client.post(f"/queue/cancelItem?id={item.pk}")
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.state == QueueItem.State.BUILDABLE and not item.cancelled


# --- /queue/api/json ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_queue_api_has_jenkins_fields(viewer_client):
    job = make_job("gpu-job", label_expression="gpu")
    make_build(job, 1, Result.FAILURE)
    item = queue(
        job, why="There are no nodes with the label ‘gpu’",
        causes=[{"text": "Started by user admin", "count": 2}, {"text": "Started by timer", "count": 1}],
    )  # fmt: skip
    waiting = queue(make_job("quiet"), state=QueueItem.State.WAITING, due_in=4)
    data = viewer_client.get("/queue/api/json").json()
    assert data["_class"] == "hudson.model.Queue"
    first, second = data["items"]
    assert first["id"] == item.pk and second["id"] == waiting.pk
    assert first["_class"] == "hudson.model.Queue$BuildableItem"
    assert first["task"] == {
        "_class": "hudson.model.FreeStyleProject",
        "name": "gpu-job",
        "url": "http://testserver/job/gpu-job/",
        "color": "red",
    }
    assert first["why"] == "There are no nodes with the label ‘gpu’"
    assert first["buildable"] is True and first["blocked"] is False and first["stuck"] is True
    assert first["url"] == f"queue/item/{item.pk}/"
    assert first["inQueueSince"] == int(item.in_queue_since.timestamp() * 1000)
    assert first["buildableStartMilliseconds"] == int(item.due_at.timestamp() * 1000)
    assert first["actions"][0]["causes"] == [
        {"shortDescription": "Started by user admin"},
        {"shortDescription": "Started by user admin"},
        {"shortDescription": "Started by timer"},
    ]
    assert second["_class"] == "hudson.model.Queue$WaitingItem"
    assert second["why"].startswith("In the quiet period. Expires in ")
    assert second["timestamp"] == int(waiting.due_at.timestamp() * 1000)
    assert second["task"]["color"] == "notbuilt"


# --- the Build Executor Status widget -----------------------------------------------------------------


@pytest.mark.django_db
def test_idle_executors_and_the_collapsed_summary(admin_client):
    make_node("(built-in)", is_builtin=True, launcher="builtin")
    make_node("agent1", num_executors=3)
    text = text_of(admin_client.get("/widgets/executors"))
    assert "Build Executor Status" in text
    assert "2 agents (0 of 5 executors busy)" in text
    builtin = node_block(text, "(built-in)")
    assert '<a class="executor-node-name" href="/computer/(built-in)/">Built-In Node</a>' in builtin
    assert ">0/2<" in builtin and builtin.count(">Idle<") == 2
    agent = node_block(text, "agent1")
    assert '<a class="executor-node-name" href="/computer/agent1/">agent1</a>' in agent
    assert ">0/3<" in agent and agent.count(">Idle<") == 3
    # The built-in node comes first, as on the Nodes page.
    assert text.index('data-node="(built-in)"') < text.index('data-node="agent1"')


@pytest.mark.django_db
def test_a_running_build_shows_its_progress_and_abort(operator_client):
    node = make_node("agent1")
    job = make_job("compile")
    make_build(job, 1, Result.SUCCESS, duration=60)
    running = make_build(job, 2, "", ago=30, node=node)
    occupy(node, 2, running)
    text = text_of(operator_client.get("/widgets/executors"))
    block = node_block(text, "agent1")
    assert ">1/2<" in block and "1 agents (1 of 2 executors busy)" in text
    assert '<a class="executor-build" href="/job/compile/2/console"' in block
    assert ">compile #2</a>" in block
    # Half of the last successful build's 60 s.
    bar = re.search(r'<div class="executor-progress[^"]*"[^>]*>', block).group(0)
    assert 'aria-valuenow="50"' in bar or 'aria-valuenow="51"' in bar
    assert "stuck" not in bar and "indeterminate" not in bar
    assert f'data-started="{int(running.started_at.timestamp() * 1000)}"' in bar
    assert 'data-estimate="60000"' in bar
    assert re.search(
        r'title="Started (29|30|31) sec ago\nEstimated remaining time: (29|30|31) sec"', bar
    )
    assert 'hx-post="/job/compile/2/stop"' in block
    assert 'hx-confirm="Are you sure you want to abort compile #2?"' in block
    # Executor 1 is still idle.
    assert block.count(">Idle<") == 1


@pytest.mark.django_db
def test_a_build_ten_times_over_its_estimate_is_likely_stuck(viewer_client):
    node = make_node("agent1", num_executors=2)
    job = make_job("hang")
    make_build(job, 1, Result.SUCCESS, duration=10)
    occupy(node, 1, make_build(job, 2, "", ago=101, node=node))
    fresh = make_job("fresh")
    occupy(node, 2, make_build(fresh, 1, "", ago=3, node=node))  # never succeeded: no estimate
    text = text_of(viewer_client.get("/widgets/executors"))
    bars = re.findall(r'<div class="executor-progress[^"]*"[^>]*>', text)
    assert len(bars) == 2
    assert 'class="executor-progress stuck"' in bars[0] and 'aria-valuenow="99"' in bars[0]
    assert "Estimated remaining time: N/A" in bars[0]
    assert 'class="executor-progress indeterminate"' in bars[1]
    # Viewers cannot abort.
    assert "/stop" not in text


@pytest.mark.django_db
def test_node_states_are_captioned_as_jenkins_does(admin_client):
    make_node("down", connection=Node.Connection.DISCONNECTED)
    make_node("failed", connection=Node.Connection.FAILED)
    make_node("starting", connection=Node.Connection.CONNECTING)
    make_node("paused", offline=Node.Offline.USER, offline_message="maintenance")
    make_node("full", offline=Node.Offline.MONITOR)
    make_node("up")
    text = text_of(admin_client.get("/widgets/executors"))
    assert '<span class="executor-node-note">(offline)</span>' in node_block(text, "down")
    assert '<span class="executor-node-note">(offline)</span>' in node_block(text, "failed")
    assert '<span class="executor-node-note">(launching...)</span>' in node_block(text, "starting")
    assert '<span class="executor-node-note">(suspended)</span>' in node_block(text, "paused")
    assert '<span class="executor-node-note">(suspended)</span>' in node_block(text, "full")
    assert "executor-node-note" not in node_block(text, "up")
    # A node that is not connected lists no idle executors; a suspended one does.
    assert "Idle" not in node_block(text, "down") and "Idle" not in node_block(text, "starting")
    assert node_block(text, "paused").count(">Idle<") == 2
    assert "6 agents (0 of 12 executors busy)" in text


@pytest.mark.django_db
def test_a_build_still_running_on_a_node_that_went_offline_is_shown(admin_client):
    node = make_node("gone", connection=Node.Connection.DISCONNECTED, num_executors=1)
    occupy(node, 1, make_build(make_job("alpha"), 1, "", ago=5, node=node))
    block = node_block(text_of(admin_client.get("/widgets/executors")), "gone")
    assert "(offline)" in block and "alpha #1" in block and ">1/1<" in block


@pytest.mark.django_db
def test_nothing_configured(admin_client):
    text = text_of(admin_client.get("/widgets/executors"))
    assert "No executors, agents or clouds are configured." in text


@pytest.mark.django_db
def test_the_widget_for_one_node(admin_client, admin):
    make_node("(built-in)", is_builtin=True, launcher="builtin")
    agent = make_node("agent1")
    occupy(agent, 1, make_build(make_job("alpha"), 1, "", ago=5, node=agent))

    text = text_of(admin_client.get("/widgets/executors?node=agent1"))
    assert 'data-node="agent1"' in text and 'data-node="(built-in)"' not in text
    assert 'data-refresh-url="/widgets/executors?node=agent1"' in text
    assert "1 agents (1 of 2 executors busy)" in text
    builtin = text_of(admin_client.get("/widgets/executors?node=(built-in)"))
    assert 'data-node="(built-in)"' in builtin and 'data-node="agent1"' not in builtin
    assert admin_client.get("/widgets/executors?node=nope").status_code == 404

    # What the node pages include.
    request = RequestFactory().get("/computer/agent1/")
    request.user = admin
    html = Template('{% include "builds/widgets/executors.html" with node=node %}').render(
        Context({"request": request, "node": agent, "perms": None})
    )
    assert 'data-node="agent1"' in html and 'data-node="(built-in)"' not in html
    assert f'id="executors-{agent.pk}"' in html and "alpha #1" in html
    assert "<script>" in html  # the widget brings its live updates along


@pytest.mark.django_db
def test_the_include_shows_nothing_to_a_user_who_may_not_see_nodes(nobody):
    make_node("agent1")
    request = RequestFactory().get("/")
    request.user = nobody
    html = Template(
        '{% include "builds/widgets/executors.html" %}{% include "builds/widgets/build_queue.html" %}'
    ).render(Context({"request": request}))
    assert html.strip() == ""


# --- the widgets' WebSocket ---------------------------------------------------------------------------

application = URLRouter(websocket_urlpatterns)


def communicator(path: str, user) -> WebsocketCommunicator:
    com = WebsocketCommunicator(application, path)
    com.scope["user"] = user  # what AuthMiddlewareStack puts there for a signed-in session
    return com


@sync_to_async
def persona(username: str, group: str | None):
    return make_persona(username, group)


@sync_to_async
def user_with(username: str, *codenames: str):
    user = get_user_model().objects.create_user(username, password="x")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_socket_rejects_anonymous_and_users_without_permission():
    com = communicator("/ws/widgets/?widgets=queue,executors", AnonymousUser())
    connected, code = await com.connect()
    assert not connected and code == 4403
    nobody = await user_with("nobody")
    com = communicator("/ws/widgets/?widgets=queue,executors,jobs", nobody)
    connected, code = await com.connect()
    assert not connected and code == 4403


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_socket_forwards_queue_executor_and_node_changes():
    viewer = await persona("victor", "Viewers")
    com = communicator("/ws/widgets/?widgets=queue,executors", viewer)
    connected, _ = await com.connect()
    assert connected
    layer = get_channel_layer()
    await layer.group_send(services.QUEUE_GROUP, {"type": "builds.changed", "event": "queued"})
    assert await com.receive_json_from(timeout=2) == {"kind": "builds", "event": "queued"}
    await layer.group_send(
        services.EXECUTORS_GROUP, {"type": "builds.changed", "event": "finished", "build": 3}
    )
    assert await com.receive_json_from(timeout=2) == {"kind": "builds", "event": "finished"}
    await layer.group_send("nodes", {"type": "node.changed", "node": 1, "event": "monitor"})
    await layer.group_send("nodes", {"type": "node.changed", "node": 1, "event": "state"})
    # New monitor data is not forwarded: the widgets do not show it.
    assert await com.receive_json_from(timeout=2) == {"kind": "node", "event": "state"}
    await com.disconnect()
    # Gone from the groups once disconnected.
    await layer.group_send(services.QUEUE_GROUP, {"type": "builds.changed", "event": "queued"})
    assert await com.receive_nothing(timeout=0.2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_each_widget_only_for_who_may_see_it():
    # May see jobs, not nodes: the executors widget is not followed.
    builds_only = await user_with("bob", "view_job")
    com = communicator("/ws/widgets/?widgets=queue,executors", builds_only)
    connected, _ = await com.connect()
    assert connected
    layer = get_channel_layer()
    await layer.group_send("nodes", {"type": "node.changed", "node": 1, "event": "state"})
    await layer.group_send(services.QUEUE_GROUP, {"type": "builds.changed", "event": "why"})
    # Only the queue's message: "nodes" is joined for the queue's whys, but "executors" is not.
    assert await com.receive_json_from(timeout=2) == {"kind": "node", "event": "state"}
    assert await com.receive_json_from(timeout=2) == {"kind": "builds", "event": "why"}
    await layer.group_send(services.EXECUTORS_GROUP, {"type": "builds.changed", "event": "running"})
    assert await com.receive_nothing(timeout=0.2)
    await com.disconnect()

    nodes_only = await user_with("nora", "view_node")
    com = communicator("/ws/widgets/?widgets=queue", nodes_only)
    connected, code = await com.connect()
    assert not connected and code == 4403


@pytest.mark.django_db
def test_a_new_why_is_announced_to_the_queue(monkeypatch, django_capture_on_commit_callbacks):
    """The scheduler writes why an item waits; the Build Queue widget is told."""
    sent = []
    monkeypatch.setattr(services, "push", lambda group, message: sent.append((group, message)))
    job = make_job("gpu-job", label_expression="gpu")
    queue(job)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_scheduler()
    for callback in callbacks:
        if getattr(callback, "__name__", "") == "send":
            callback()
    assert (services.QUEUE_GROUP, {"type": "builds.changed", "event": "why"}) in sent
    assert QueueItem.objects.get(job=job).why == "There are no nodes with the label ‘gpu’"
