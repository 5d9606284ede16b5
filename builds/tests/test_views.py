"""The jobs and builds screens and the log endpoints through Django's test client: every page
and action for the administrator, the operator and the viewer, form validation with Jenkins'
messages, progressiveText exactly as Jenkins serves it, consoleText streaming, the JSON API."""

from __future__ import annotations

import gzip
import html as html_module
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from builds import services, views
from builds.models import Build, Job, QueueItem
from console import logs
from nodes import services as node_services
from nodes.models import Node

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_admin(admin) -> Client:
    return _client_for(admin)


@pytest.fixture
def as_operator(operator) -> Client:
    return _client_for(operator)


@pytest.fixture
def as_viewer(viewer) -> Client:
    return _client_for(viewer)


def make_job(name: str = "hello", **fields) -> Job:
    fields.setdefault("steps", [{"type": "shell", "command": "echo hi", "unstable_return": None}])
    return Job.objects.create(name=name, **fields)


def make_build(job: Job, number: int, *, result: str = "SUCCESS", status: str = "finished",
               node: Node | None = None, log: bytes | None = None, complete: bool = True,
               **fields) -> Build:  # fmt: skip
    now = timezone.now()
    build = Build.objects.create(
        job=job,
        number=number,
        status=status,
        result=result if status == "finished" else "",
        causes=[{"text": "Started by user admin", "count": 1}],
        node=node,
        node_name=node.url_name if node else "",
        started_at=None if status == "pending" else now - timedelta(seconds=90),
        finished_at=now if status == "finished" else None,
        duration_ms=63_000 if status == "finished" else None,
        **fields,
    )
    Job.objects.filter(pk=job.pk).update(next_build_number=max(job.next_build_number, number + 1))
    job.refresh_from_db()
    if log is not None:
        write_log(build, log, complete=complete)
    return build


def write_log(build: Build, data: bytes, *, complete: bool = False) -> None:
    stream = logs.open_stream(build.log_key)
    logs.append(stream, data)
    if complete:
        logs.finish(stream)


def text_of(response) -> str:
    """The page as a user reads it: tags stripped, whitespace collapsed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style|template)\b.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html_module.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def url(name: str, *args) -> str:
    return reverse(f"builds:{name}", args=args)


# --- New Item -----------------------------------------------------------------------------------


def test_new_item_page_offers_a_freestyle_project(as_admin):
    response = as_admin.get("/newJob")
    assert response.status_code == 200
    text = text_of(response)
    assert "Enter an item name" in text
    assert "Freestyle project" in text
    assert "This is the central feature of Steward. Steward will build your project" in text
    assert "Copy from" not in text  # nothing to copy yet


def test_creating_a_job_opens_its_configuration(as_operator):
    response = as_operator.post("/createItem", {"name": "my app", "mode": "freestyle"})
    job = Job.objects.get(name="my app")
    assert response.status_code == 302
    assert response["Location"] == "/job/my%20app/configure"
    assert job.steps == [] and not job.disabled


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "This field cannot be empty, please enter a valid name"),
        ("bad/name", "‘/’ is an unsafe character"),
        ("what?", "‘?’ is an unsafe character"),
        ("dot.", "A name cannot end with ‘.’"),
        ("..", "“..” is not an allowed name"),
        ("hello", "A job already exists with the name ‘hello’"),
        ("HELLO", "A job already exists with the name ‘HELLO’"),
    ],
)
def test_new_item_name_rules(as_admin, name, message):
    make_job("hello")
    response = as_admin.post("/createItem", {"name": name, "mode": "freestyle"})
    assert response.status_code == 200
    assert message in text_of(response)
    assert Job.objects.count() == 1


def test_live_name_check(as_admin):
    make_job("hello")
    assert "A job already exists with the name ‘hello’" in text_of(
        as_admin.get(url("check-job-name"), {"name": "hello"})
    )
    assert "‘#’ is an unsafe character" in text_of(
        as_admin.get(url("check-job-name"), {"name": "a#b"})
    )
    assert text_of(as_admin.get(url("check-job-name"), {"name": "fine"})) == ""


def test_copy_from_an_existing_job(as_admin):
    make_job(
        "source",
        description="builds things",
        label_expression="linux && !arm",
        quiet_period=0,
        steps=[{"type": "shell", "command": "make", "unstable_return": 3}],
        stuck_timeout_minutes=10,
        timestamps=True,
    )
    page = as_admin.get("/newJob")
    assert "Copy from" in text_of(page) and 'value="source"' in page.content.decode()
    response = as_admin.post("/createItem", {"name": "copy", "mode": "copy", "copy_from": "source"})
    assert response.status_code == 302
    copy = Job.objects.get(name="copy")
    assert copy.label_expression == "linux && !arm" and copy.quiet_period == 0
    assert copy.steps == [{"type": "shell", "command": "make", "unstable_return": 3}]
    assert copy.stuck_timeout_minutes == 10 and copy.timestamps
    assert copy.next_build_number == 1

    missing = as_admin.post("/createItem", {"name": "x", "mode": "copy", "copy_from": "nope"})
    assert "No such job: nope" in text_of(missing)


def test_viewer_may_not_create_jobs(as_viewer):
    assert as_viewer.get("/newJob").status_code == 403
    assert as_viewer.post("/createItem", {"name": "x", "mode": "freestyle"}).status_code == 403
    assert not Job.objects.exists()


def test_anonymous_is_sent_to_sign_in():
    response = Client().get("/newJob")
    assert response.status_code == 302 and response["Location"].startswith("/login")


# --- Configure ----------------------------------------------------------------------------------


def config_data(**overrides) -> dict:
    data = {
        "description": "",
        "label_expression": "",
        "quiet_period": "",
        "stuck_timeout_minutes": "",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "50",
        "steps-0-command": "echo one",
        "steps-0-unstable_return": "",
        "steps-0-DELETE": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_configure_page_shows_jenkins_fields(as_admin):
    make_job("hello", label_expression="linux", stuck_timeout_minutes=5)
    text = text_of(as_admin.get(url("configure", "hello")))
    for label in (
        "Description",
        "Restrict where this project can be run",
        "Label Expression",
        "Execute concurrent builds if necessary",
        "Quiet period",
        "Build Steps",
        "Execute shell",
        "Command",
        "Exit code to set build unstable",
        "Abort the build if it's stuck",
        "Timeout minutes",
        "Delete workspace before build starts",
        "Add timestamps to the Console Output",
        "Save",
        "Apply",
    ):
        assert label in text, label
    assert "No agent matches this label expression." in text  # there is no node "linux"


def test_saving_the_configuration(as_operator):
    job = make_job("hello", steps=[])
    data = config_data(
        description="Builds hello",
        restrict="on",
        label_expression="built-in || linux",
        concurrent_build="on",
        quiet_period="0",
        abort_stuck="on",
        stuck_timeout_minutes="15",
        delete_workspace="on",
        timestamps="on",
        **{
            "steps-TOTAL_FORMS": "2",
            "steps-0-command": "echo one\r\necho two",
            "steps-1-command": "exit 3",
            "steps-1-unstable_return": "3",
        },
    )
    response = as_operator.post(url("config-submit", "hello"), data)
    assert response.status_code == 302 and response["Location"] == "/job/hello/"
    job.refresh_from_db()
    assert job.description == "Builds hello"
    assert job.label_expression == "built-in || linux"
    assert job.concurrent_build and job.delete_workspace and job.timestamps
    assert job.quiet_period == 0 and job.stuck_timeout_minutes == 15
    assert job.steps == [
        {"type": "shell", "command": "echo one\necho two", "unstable_return": None},
        {"type": "shell", "command": "exit 3", "unstable_return": 3},
    ]

    # Unchecking the boxes clears what belongs to them; an empty quiet period is the default.
    data = config_data(
        **{"steps-0-DELETE": "on", "steps-0-command": "", "steps-INITIAL_FORMS": "1"}
    )
    response = as_operator.post(url("config-submit", "hello"), {**data, "apply": "Apply"})
    assert response.status_code == 302 and response["Location"] == "/job/hello/configure"
    job.refresh_from_db()
    assert job.label_expression == "" and job.stuck_timeout_minutes is None
    assert job.quiet_period is None and job.steps == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"restrict": "on", "label_expression": "linux &&"}, "Invalid boolean expression: "),
        ({"restrict": "on", "label_expression": "(a"}, "Invalid boolean expression: "),
        ({"restrict": "on", "label_expression": ""}, "Specify a label expression"),
        ({"quiet_period": "-1"}, "Ensure this value is greater than or equal to 0."),
        ({"quiet_period": "soon"}, "Enter a whole number."),
        ({"abort_stuck": "on"}, "Specify the timeout in minutes"),
        ({"abort_stuck": "on", "stuck_timeout_minutes": "0"}, "Timeout minutes must be at least 1"),
        ({"steps-0-command": "   "}, "Specify the command to run"),
        (
            {"steps-0-unstable_return": "0"},
            "Exit code zero is ignored and does not make the build unstable",
        ),
        ({"steps-0-unstable_return": "300"}, "Invalid exit code value: 300. Check help section."),
        ({"steps-0-unstable_return": "x"}, "Enter a whole number."),
        ({"steps-TOTAL_FORMS": "51"}, "Please submit at most 50 forms."),
    ],
)
def test_configuration_validation(as_admin, overrides, message):
    job = make_job("hello")
    before = Job.objects.values().get(pk=job.pk)
    response = as_admin.post(url("config-submit", "hello"), config_data(**overrides))
    assert response.status_code == 200
    assert message in text_of(response)
    assert Job.objects.values().get(pk=job.pk) == before


def test_label_expression_is_checked_live_against_the_nodes(as_admin):
    node_services.ensure_builtin_node()
    Node.objects.create(name="agent1", label_string="linux docker", remote_fs="/srv")
    Node.objects.create(name="agent2", label_string="linux", remote_fs="/srv")

    def check(value: str) -> str:
        return text_of(as_admin.get(url("check-label"), {"label_expression": value}))

    assert check("linux") == "Label ‘linux’ matches 2 nodes"
    assert check("linux && docker") == "Label ‘linux && docker’ matches 1 node"
    assert check("built-in") == "Label ‘built-in’ matches 1 node"
    assert check("windows") == "No agent matches this label expression."
    assert check("Linux") == (
        "No agent matches this label expression. Did you mean ‘linux’ instead of ‘Linux’?"
    )
    assert check("linux ||").startswith("Invalid boolean expression: ")
    assert check("") == ""
    # Jenkins' parameter name works too.
    assert (
        text_of(as_admin.get(url("check-label"), {"value": "linux"}))
        == "Label ‘linux’ matches 2 nodes"
    )


def test_viewer_sees_the_configuration_read_only(as_viewer):
    make_job("hello")
    response = as_viewer.get(url("configure", "hello"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "You may view this configuration but not change it." in text_of(response)
    assert re.search(r'<textarea[^>]*name="steps-0-command"[^>]*disabled', body)
    assert 'name="save"' not in body
    assert as_viewer.post(url("config-submit", "hello"), config_data()).status_code == 403


# --- the job page -------------------------------------------------------------------------------


def test_job_page_shows_history_permalinks_and_label(as_admin):
    node = node_services.ensure_builtin_node()
    job = make_job("hello", label_expression="built-in", description="The hello project")
    make_build(job, 1, result="SUCCESS", node=node)
    make_build(job, 2, result="FAILURE", node=node)
    make_build(job, 3, result="UNSTABLE", node=node)
    make_build(job, 4, result="ABORTED", node=node)
    make_build(job, 5, status="running", node=node)
    response = as_admin.get(url("job", "hello"))
    assert response.status_code == 200
    body = response.content.decode()
    text = text_of(response)
    assert "The hello project" in text
    assert "Label Expression built-in" in text and "Label ‘built-in’ matches 1 node" in text
    for label, number in [
        ("Last build", 5),
        ("Last stable build", 1),
        ("Last successful build", 3),
        ("Last failed build", 2),
        ("Last unstable build", 3),
        ("Last unsuccessful build", 4),
        ("Last completed build", 4),
    ]:
        assert f"{label} (#{number})" in text, label
    assert 'href="/job/hello/lastSuccessfulBuild/"' in body
    rows = re.findall(r'<tr data-build="(\d+)" data-result="(\w+)">.*?title="([^"]+)"', body, re.S)
    assert rows == [
        ("5", "BUILDING", "In progress"),
        ("4", "ABORTED", "Aborted"),
        ("3", "UNSTABLE", "Unstable"),
        ("2", "FAILURE", "Failed"),
        ("1", "SUCCESS", "Success"),
    ]
    # Result colours: a running build shows the previous result, animated.
    assert 'class="ball ball-aborted ball-anime"' in body
    for css in ("ball-blue", "ball-red", "ball-yellow"):
        assert css in body
    assert "1 min 3 sec" in text  # a duration, in Jenkins' words
    assert "Running for 1 min 30 sec" in text


def test_job_history_is_refetched_only_while_something_is_live(as_admin):
    job = make_job("hello")
    make_build(job, 1)
    page = as_admin.get(url("job", "hello")).content.decode()
    assert 'id="job-live"' in page and 'hx-trigger="every 2s"' not in page
    services.schedule_build(job, "Started by timer")
    page = as_admin.get(url("job", "hello"))
    assert 'hx-trigger="every 2s"' in page.content.decode()
    assert "#2 (pending—In the quiet period. Expires in" in text_of(page)
    partial = as_admin.get(url("job", "hello"), HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in body
    # The permalinks and, out of band, the heading's ball come along.
    assert "Last build (#1)" in text_of(partial)
    assert '<span id="job-ball" hx-swap-oob="true">' in body
    QueueItem.objects.update(state=QueueItem.State.LEFT)
    done = as_admin.get(url("job", "hello"), HTTP_HX_REQUEST="true")
    assert done.status_code == 286  # htmx stops polling


def test_job_page_query_count_does_not_grow_with_builds(as_admin):
    job = make_job("hello")
    node = node_services.ensure_builtin_node()
    for n in range(1, 4):
        make_build(job, n, node=node)
    as_admin.get(url("job", "hello"))  # warm-up (session, permissions)
    with CaptureQueriesContext(connection) as few:
        as_admin.get(url("job", "hello"))
    for n in range(4, 24):
        make_build(job, n, node=node, result="FAILURE" if n % 3 else "SUCCESS")
    with CaptureQueriesContext(connection) as many:
        as_admin.get(url("job", "hello"))
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_history_pages(as_admin):
    job = make_job("hello")
    for n in range(1, 31):
        make_build(job, n)
    first = text_of(as_admin.get(url("job", "hello")))
    assert "#30" in first and "#6 " in first and "#5 " not in first and "Older builds" in first
    second = text_of(as_admin.get(url("job", "hello"), {"page": 2}))
    assert "#5 " in second and "#6 " not in second and "Newer builds" in second


def test_job_tasks_follow_permissions(as_admin, as_viewer):
    make_job("hello")
    admin_text = text_of(as_admin.get(url("job", "hello")))
    for task in ("Build Now", "Configure", "Delete Project", "Rename", "Disable Project"):
        assert task in admin_text, task
    viewer_text = text_of(as_viewer.get(url("job", "hello")))
    assert "View Configuration" in viewer_text
    for task in ("Build Now", "Delete Project", "Rename", "Disable Project"):
        assert task not in viewer_text, task


def test_unknown_job_is_404(as_admin):
    assert as_admin.get("/job/nope/").status_code == 404
    assert as_admin.get("/job/nope/1/").status_code == 404


# --- Build Now ----------------------------------------------------------------------------------


def test_build_now_answers_api_clients_like_jenkins(as_operator):
    job = make_job("hello")
    first = as_operator.post(url("build-now", "hello"))
    item = QueueItem.objects.get(job=job)
    assert first.status_code == 201
    assert first["Location"] == f"http://testserver/queue/item/{item.pk}/"
    assert first.json() == {"queueItem": item.pk, "url": first["Location"], "created": True}
    again = as_operator.post(url("build-now", "hello"))
    assert again.status_code == 303 and again["Location"] == first["Location"]
    item.refresh_from_db()
    assert [(c["text"], c["count"]) for c in item.causes] == [("Started by user olivia", 2)]
    assert QueueItem.objects.count() == 1


def test_build_now_from_the_browser_goes_back_to_the_job(as_admin):
    make_job("hello")
    response = as_admin.post(url("build-now", "hello"), follow=True, **BROWSER)
    assert response.redirect_chain == [("/job/hello/", 302)]
    assert "Build scheduled" in text_of(response)
    assert QueueItem.objects.filter(job__name="hello").exists()


def test_build_now_with_a_delay(as_admin):
    make_job("hello", quiet_period=0)
    before = timezone.now()
    assert as_admin.post(url("build-now", "hello") + "?delay=30sec").status_code == 201
    due = QueueItem.objects.get().due_at
    assert before + timedelta(seconds=29) < due < timezone.now() + timedelta(seconds=31)
    assert as_admin.post(url("build-now", "hello") + "?delay=soon").status_code == 400


def test_disabled_job_is_not_buildable(as_admin):
    make_job("hello", disabled=True)
    response = as_admin.post(url("build-now", "hello"))
    assert response.status_code == 409
    assert response.content.decode() == "hello is not buildable"
    browser = as_admin.post(url("build-now", "hello"), follow=True, **BROWSER)
    assert "hello is not buildable" in text_of(browser)
    assert not QueueItem.objects.exists()


def test_viewer_may_not_build(as_viewer):
    make_job("hello")
    assert as_viewer.post(url("build-now", "hello")).status_code == 403
    assert not QueueItem.objects.exists()


def test_build_now_is_post_only(as_admin):
    make_job("hello")
    assert as_admin.get(url("build-now", "hello")).status_code == 405


# --- Rename, Delete, Disable ------------------------------------------------------------------


def test_rename(as_operator):
    job = make_job("hello")
    make_job("other")
    page = as_operator.get("/job/hello/confirm-rename")
    assert page.status_code == 200 and "New Name" in text_of(page)
    for name, message in [
        ("hello", "The new name is the same as the current name."),
        ("other", "A job already exists with the name ‘other’"),
        ("a/b", "‘/’ is an unsafe character"),
        ("", "This field cannot be empty, please enter a valid name"),
    ]:
        assert message in text_of(as_operator.post("/job/hello/confirmRename", {"new_name": name}))
    response = as_operator.post("/job/hello/confirmRename", {"new_name": "world"})
    assert response.status_code == 302 and response["Location"] == "/job/world/"
    job.refresh_from_db()
    assert job.name == "world"


def test_rename_is_refused_while_building(as_admin):
    job = make_job("hello")
    make_build(job, 1, status="running")
    response = as_admin.post("/job/hello/confirmRename", {"new_name": "world"})
    assert "Unable to rename a job while it is building." in text_of(response)
    assert Job.objects.filter(name="hello").exists()


def test_viewer_may_not_rename(as_viewer):
    make_job("hello")
    assert as_viewer.get("/job/hello/confirm-rename").status_code == 403
    assert as_viewer.post("/job/hello/confirmRename", {"new_name": "x"}).status_code == 403


def test_delete_project(as_operator):
    job = make_job("hello")
    make_build(job, 1, log=b"old output\n")
    page = as_operator.get("/job/hello/delete")
    assert "Delete the Project ‘hello’?" in text_of(page)
    task = as_operator.get(url("job", "hello")).content.decode()
    assert 'data-confirm="Delete the Project ‘hello’?"' in task
    response = as_operator.post("/job/hello/doDelete", follow=True, **BROWSER)
    assert response.redirect_chain[-1] == ("/", 302)
    assert not Job.objects.exists() and not Build.objects.exists()


def test_delete_is_refused_while_building(as_admin):
    job = make_job("hello")
    make_build(job, 1, status="running")
    response = as_admin.post("/job/hello/doDelete", follow=True, **BROWSER)
    assert "hello has a build in progress; abort it first." in text_of(response)
    assert Job.objects.filter(name="hello").exists()


def test_viewer_may_not_delete(as_viewer):
    make_job("hello")
    assert as_viewer.get("/job/hello/delete").status_code == 403
    assert as_viewer.post("/job/hello/doDelete").status_code == 403
    assert Job.objects.exists()


def test_disable_and_enable(as_operator):
    job = make_job("hello")
    services.schedule_build(job, "Started by timer")
    response = as_operator.post("/job/hello/disable", follow=True)
    assert "This project is currently disabled" in text_of(response)
    job.refresh_from_db()
    assert job.disabled
    # Like Jenkins, disabling cancels the queued build.
    assert QueueItem.objects.get().cancelled
    assert 'disabled="' not in response.content.decode() or "Build Now" in text_of(response)
    response = as_operator.post("/job/hello/enable", follow=True)
    job.refresh_from_db()
    assert not job.disabled and "This project is currently disabled" not in text_of(response)


def test_viewer_may_not_disable(as_viewer):
    make_job("hello")
    assert as_viewer.post("/job/hello/disable").status_code == 403
    assert not Job.objects.get().disabled


# --- permalinks ---------------------------------------------------------------------------------


def test_permalinks_redirect_to_their_build(as_viewer):
    job = make_job("hello")
    make_build(job, 1, result="SUCCESS")
    make_build(job, 2, result="FAILURE")
    make_build(job, 3, status="running")
    assert as_viewer.get("/job/hello/lastBuild/")["Location"] == "/job/hello/3/"
    assert as_viewer.get("/job/hello/lastSuccessfulBuild/")["Location"] == "/job/hello/1/"
    assert as_viewer.get("/job/hello/lastFailedBuild/")["Location"] == "/job/hello/2/"
    assert as_viewer.get("/job/hello/lastCompletedBuild/")["Location"] == "/job/hello/2/"
    assert (
        as_viewer.get("/job/hello/lastBuild/consoleText")["Location"] == "/job/hello/3/consoleText"
    )
    assert as_viewer.get("/job/hello/lastUnstableBuild/").status_code == 404


# --- the build page -----------------------------------------------------------------------------


def test_build_page(as_operator):
    node = node_services.ensure_builtin_node()
    job = make_job("hello")
    build = make_build(job, 1, node=node, workspace="/srv/steward/workspace/hello")
    response = as_operator.get(url("build", "hello", 1))
    text = text_of(response)
    assert response.status_code == 200
    assert "Build #1" in text and "SUCCESS" in text
    assert "Started by user admin" in text
    assert "Took 1 min 3 sec" in text
    assert "Built on Built-In Node" in text
    assert "/srv/steward/workspace/hello" in text
    assert "Console Output" in text
    assert "Abort" not in text  # finished
    assert 'hx-trigger="every 2s"' not in response.content.decode()
    assert as_operator.get(url("build", "hello", 1), HTTP_HX_REQUEST="true").status_code == 286
    assert build.get_absolute_url() == "/job/hello/1/"


def test_running_build_offers_abort_to_operators_only(as_operator, as_viewer):
    job = make_job("hello")
    make_build(job, 7, status="running")
    page = as_operator.get(url("build", "hello", 7))
    body = page.content.decode()
    assert "In progress" in text_of(page) and "Running for 1 min 30 sec" in text_of(page)
    assert 'data-confirm="Are you sure you want to abort hello #7?"' in body
    assert 'hx-trigger="every 2s"' in body
    assert as_operator.get(url("build", "hello", 7), HTTP_HX_REQUEST="true").status_code == 200
    assert 'id="abort-build"' not in as_viewer.get(url("build", "hello", 7)).content.decode()


def test_stop_aborts_the_build(as_operator):
    job = make_job("hello")
    build = make_build(job, 1, status="running")
    response = as_operator.post(url("stop", "hello", 1), follow=True, **BROWSER)
    assert response.redirect_chain == [("/job/hello/1/", 302)]
    build.refresh_from_db()
    assert build.abort_requested and build.aborted_by == "olivia"
    assert "Aborting…" in text_of(response)


def test_stop_from_htmx_answers_204(as_admin):
    job = make_job("hello")
    build = make_build(job, 1, status="running")
    response = as_admin.post(url("stop", "hello", 1), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    build.refresh_from_db()
    assert build.abort_requested


def test_viewer_may_not_abort(as_viewer):
    job = make_job("hello")
    build = make_build(job, 1, status="running")
    assert as_viewer.post(url("stop", "hello", 1)).status_code == 403
    build.refresh_from_db()
    assert not build.abort_requested


# --- the console --------------------------------------------------------------------------------


def test_console_shows_the_whole_small_log_with_colours_escaped(as_viewer):
    job = make_job("hello")
    build = make_build(
        job, 1, log=b"Started\n\x1b[32mgreen\x1b[0m <script>alert(1)</script>\nFinished: SUCCESS\n"
    )
    response = as_viewer.get(url("console", "hello", 1))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Skipping" not in body
    assert (
        '<div class="line"><span class="ansi-green">green</span> &lt;script&gt;alert(1)&lt;/script&gt;</div>'
        in body
    )
    assert "<script>alert(1)" not in body
    assert f'data-ws-url="/ws/builds/{build.pk}/console/"' in body
    size = logs.open_stream(build.log_key).size
    assert f'data-offset="{size}"' in body
    assert "Finished: SUCCESS" in text_of(response)
    assert "console.js" in body


def test_console_opens_with_the_tail_of_a_big_log(as_viewer):
    job = make_job("hello")
    line = b"x" * 99 + b"\n"
    data = b"".join(b"%07d " % i + line for i in range(4000))  # 428,000 bytes
    build = make_build(job, 1, status="running", log=data, complete=False)
    response = as_viewer.get(url("console", "hello", 1))
    body = response.content.decode()
    tail = views.console_tail(build)
    skipped = len(data) - 150 * 1024
    # The tail starts at the next line start after the last 150 KB.
    start = data.index(b"\n", skipped) + 1
    assert tail.skipped_kb == start // 1024
    assert f"Skipping {start // 1024} KB.. Full Log" in text_of(response)
    assert 'href="/job/hello/1/consoleText">Full Log</a>' in body
    assert body.count('<div class="line">') == data[start:].count(b"\n")
    assert "0003999 " in body and "0000000 " not in body
    assert f'data-offset="{len(data)}"' in body
    assert 'class="spinner"' in body and "In progress" in text_of(response)


def test_console_tail_ends_before_a_cut_character_or_escape_sequence():
    job = make_job("hello")
    build = make_build(job, 1, status="running", log=b"ok\nna" + "ï".encode()[:1], complete=False)
    tail = views.console_tail(build)
    # "ï" was cut in the middle: the page stops before it; the socket resumes there.
    assert tail.lines == ["ok", "na"] and tail.open_line
    assert tail.next_offset == len(b"ok\nna")
    build = make_build(job, 2, status="running", log=b"a\x1b[1;3", complete=False)
    tail = views.console_tail(build)
    assert tail.lines == ["a"] and tail.next_offset == 1 and tail.sgr == ""
    build = make_build(job, 3, status="running", log=b"\x1b[1;31mred\n", complete=False)
    tail = views.console_tail(build)
    assert tail.lines == ['<span class="ansi-bold ansi-red">red</span>'] and not tail.open_line
    assert tail.sgr == "1;31"  # the colour continues into what the socket sends


def test_console_tail_keeps_no_more_lines_than_the_page_does(as_viewer):
    job = make_job("hello")
    data = b"".join(b"%d\n" % i for i in range(30_000))  # 168,890 bytes of short lines
    build = make_build(job, 1, log=data)
    tail = views.console_tail(build)
    assert len(tail.lines) == views.runs.CONSOLE_MAX_LINES
    assert tail.lines[0] == "20000" and tail.lines[-1] == "29999"
    assert tail.skipped_kb == len(b"".join(b"%d\n" % i for i in range(20_000))) // 1024
    body = as_viewer.get(url("console", "hello", 1)).content.decode()
    assert body.count('<div class="line">') == views.runs.CONSOLE_MAX_LINES


def test_console_of_a_pending_build_without_a_log(as_viewer):
    job = make_job("hello")
    make_build(job, 1, status="pending")
    response = as_viewer.get(url("console", "hello", 1))
    assert response.status_code == 200 and 'data-offset="0"' in response.content.decode()


def test_console_full_points_at_the_plain_text(as_viewer):
    job = make_job("hello")
    make_build(job, 1, log=b"x\n")
    assert as_viewer.get("/job/hello/1/consoleFull")["Location"] == "/job/hello/1/consoleText"


def test_console_text_streams_the_whole_log(as_viewer):
    job = make_job("hello")
    build = make_build(job, 1, log=b"")
    stream = logs.open_stream(build.log_key)
    pieces = [bytes([65 + i % 26]) * 100_000 + b"\n" for i in range(12)]
    for piece in pieces:
        logs.append(stream, piece)  # 12 chunks, 1.2 MB
    response = as_viewer.get(url("console-text", "hello", 1))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    parts = list(response.streaming_content)
    # Read piece by piece (at most ~256 KiB each), never the whole log at once.
    assert len(parts) >= 4 and max(len(p) for p in parts) <= logs.READ_LIMIT + 100_001
    assert b"".join(parts) == b"".join(pieces)


def test_console_text_of_a_build_without_a_log_is_empty(as_viewer):
    job = make_job("hello")
    make_build(job, 1, status="pending")
    response = as_viewer.get(url("console-text", "hello", 1))
    assert response.status_code == 200 and b"".join(response.streaming_content) == b""


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_console_text_streams_under_asgi_with_an_async_iterator(viewer):
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    @sync_to_async
    def prepare() -> bytes:
        job = make_job("hello")
        build = make_build(job, 1, log=b"")
        stream = logs.open_stream(build.log_key)
        data = b""
        for i in range(6):
            piece = b"%d" % i * 200_000 + b"\n"
            logs.append(stream, piece)
            data += piece
        return data

    data = await prepare()
    client = AsyncClient()
    await client.aforce_login(viewer)
    response = await client.get(url("console-text", "hello", 1))
    assert response.status_code == 200 and response.is_async
    parts = [part async for part in response.streaming_content]
    assert len(parts) >= 3 and b"".join(parts) == data  # chunk by chunk, not all at once


def test_viewer_may_read_logs_but_anonymous_may_not():
    job = make_job("hello")
    make_build(job, 1, log=b"x\n")
    for path in (
        "/job/hello/1/console",
        "/job/hello/1/consoleText",
        "/job/hello/1/logText/progressiveText",
    ):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login"), path


# --- progressiveText (JENKINS.md d8) ------------------------------------------------------------


def progressive(client: Client, start: int | str | None = None, **headers):
    query = {} if start is None else {"start": start}
    return client.get(url("progressive-text", "hello", 1), query, **headers)


def body_of(response) -> bytes:
    if response.get("Content-Encoding") == "gzip":
        return gzip.decompress(response.content)
    return response.content


def test_progressive_text_of_a_missing_log(as_viewer):
    job = make_job("hello")
    build = make_build(job, 1, status="running")
    response = progressive(as_viewer)
    assert response.status_code == 200 and response.content == b""
    assert response["X-Text-Size"] == "0" and response["X-More-Data"] == "true"
    # A finished build that never wrote a log has nothing more to come.
    Build.objects.filter(pk=build.pk).update(status="finished", result="ABORTED")
    response = progressive(as_viewer)
    assert response["X-Text-Size"] == "0" and "X-More-Data" not in response


def test_progressive_text_of_a_complete_log(as_viewer):
    job = make_job("hello")
    make_build(job, 1, log=b"one\ntwo\nthree without newline", complete=True)
    response = progressive(as_viewer)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain;charset=UTF-8"
    assert response.content == b"one\ntwo\nthree without newline"
    assert response["X-Text-Size"] == "29" and "X-More-Data" not in response
    assert progressive(as_viewer, 4).content == b"two\nthree without newline"
    end = progressive(as_viewer, 29)
    assert end.content == b"" and end["X-Text-Size"] == "29" and "X-More-Data" not in end


def test_progressive_text_of_a_running_build_stops_at_the_last_newline(as_viewer):
    job = make_job("hello")
    build = make_build(job, 1, status="running", log=b"one\ntwo\npart", complete=False)
    first = progressive(as_viewer, 0)
    assert first.content == b"one\ntwo\n"
    assert first["X-Text-Size"] == "8" and first["X-More-Data"] == "true"
    waiting = progressive(as_viewer, 8)
    assert waiting.content == b"" and waiting["X-Text-Size"] == "8"
    write_log(build, b"ial line\nnext")
    more = progressive(as_viewer, 8)
    assert more.content == b"partial line\n" and more["X-Text-Size"] == "21"
    write_log(build, b"\nFinished: SUCCESS\n", complete=True)
    Build.objects.filter(pk=build.pk).update(status="finished", result="SUCCESS")
    last = progressive(as_viewer, 21)
    assert last.content == b"next\nFinished: SUCCESS\n" and "X-More-Data" not in last


def test_progressive_text_start_beyond_the_length_resets_to_zero(as_viewer):
    job = make_job("hello")
    make_build(job, 1, log=b"new log\n", complete=True)
    response = progressive(as_viewer, 10_000)
    assert response.content == b"new log\n" and response["X-Text-Size"] == "8"


def test_progressive_text_start_values(as_viewer):
    job = make_job("hello")
    make_build(job, 1, log=b"0123456789\n", complete=True)
    assert progressive(as_viewer, -4).content == b"789\n"  # newer Jenkins: the last N bytes
    assert progressive(as_viewer, "abc").status_code == 400
    post = as_viewer.post(url("progressive-text", "hello", 1) + "?start=5")
    assert post.status_code == 200 and post.content == b"56789\n"


def test_progressive_text_returns_at_most_10000_lines_per_call(as_viewer):
    job = make_job("hello")
    data = b"".join(b"line %d\n" % i for i in range(25_000))
    build = make_build(job, 1, status="running", log=data, complete=False)
    offset, calls, received = 0, 0, b""
    while True:
        response = progressive(as_viewer, offset)
        body = body_of(response)
        calls += 1
        assert body.count(b"\n") <= 10_000
        received += body
        if int(response["X-Text-Size"]) == offset:
            break
        offset = int(response["X-Text-Size"])
    assert calls == 4 and received == data
    # A complete log is capped too, with X-More-Data until the end is reached.
    logs.finish(logs.open_stream(build.log_key))
    Build.objects.filter(pk=build.pk).update(status="finished", result="SUCCESS")
    first = progressive(as_viewer, 0, HTTP_ACCEPT_ENCODING="gzip")
    assert body_of(first).count(b"\n") == 10_000 and first["X-More-Data"] == "true"
    last = progressive(as_viewer, len(b"".join(b"line %d\n" % i for i in range(20_000))))
    assert body_of(last) == b"".join(b"line %d\n" % i for i in range(20_000, 25_000))
    assert "X-More-Data" not in last


def test_progressive_text_is_gzipped_over_4_kib_when_the_client_accepts_it(as_viewer):
    job = make_job("hello")
    data = b"".join(b"compressible line %d\n" % i for i in range(1000))
    make_build(job, 1, log=data, complete=True)
    zipped = progressive(as_viewer, 0, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert zipped["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.content) == data and len(zipped.content) < len(data) // 3
    assert "Accept-Encoding" in zipped["Vary"]
    plain = progressive(as_viewer, 0)
    assert "Content-Encoding" not in plain and plain.content == data
    refused = progressive(as_viewer, 0, HTTP_ACCEPT_ENCODING="gzip;q=0, identity")
    assert "Content-Encoding" not in refused
    small = progressive(as_viewer, len(data) - 100, HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in small and small.content == data[-100:]


# --- JSON API -----------------------------------------------------------------------------------


def test_build_api_json(as_viewer):
    agent = Node.objects.create(name="agent1", remote_fs="/srv")
    job = make_job("hello")
    build = make_build(job, 3, node=agent)
    data = as_viewer.get("/job/hello/3/api/json").json()
    assert data["_class"] == "hudson.model.FreeStyleBuild"
    assert data["number"] == 3 and data["url"] == "http://testserver/job/hello/3/"
    assert data["result"] == "SUCCESS" and data["building"] is False
    assert data["duration"] == 63_000
    assert data["timestamp"] == int(build.started_at.timestamp() * 1000)
    assert data["displayName"] == "#3" and data["fullDisplayName"] == "hello #3"
    assert data["builtOn"] == "agent1"
    assert data["actions"][0]["causes"] == [{"shortDescription": "Started by user admin"}]
    make_build(job, 4, status="running", node=node_services.ensure_builtin_node())
    running = as_viewer.get("/job/hello/4/api/json").json()
    assert running["result"] is None and running["building"] is True and running["duration"] == 0
    assert running["builtOn"] == ""  # Jenkins' name for the built-in node


def test_job_api_json_and_colours(as_viewer):
    job = make_job("hello")
    data = as_viewer.get("/job/hello/api/json").json()
    assert data["_class"] == "hudson.model.FreeStyleProject"
    assert data["name"] == "hello" and data["url"] == "http://testserver/job/hello/"
    assert data["color"] == "notbuilt" and data["buildable"] is True
    assert data["builds"] == [] and data["lastBuild"] is None and data["nextBuildNumber"] == 1
    assert data["inQueue"] is False

    make_build(job, 1, result="SUCCESS")
    make_build(job, 2, result="FAILURE")
    assert as_viewer.get("/job/hello/api/json").json()["color"] == "red"
    make_build(job, 3, status="running")
    data = as_viewer.get("/job/hello/api/json").json()
    assert data["color"] == "red_anime"
    assert [b["number"] for b in data["builds"]] == [3, 2, 1]
    assert data["builds"][0] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 3,
        "url": "http://testserver/job/hello/3/",
    }
    assert data["lastBuild"]["number"] == 3
    assert data["lastSuccessfulBuild"]["number"] == 1
    assert data["lastFailedBuild"]["number"] == 2
    assert data["nextBuildNumber"] == 4
    Build.objects.filter(number=3).update(status="finished", result="UNSTABLE")
    assert as_viewer.get("/job/hello/api/json").json()["color"] == "yellow"
    Build.objects.filter(number=3).update(result="ABORTED")
    assert as_viewer.get("/job/hello/api/json").json()["color"] == "aborted"
    services.schedule_build(job, "Started by timer")
    data = as_viewer.get("/job/hello/api/json").json()
    assert (
        data["inQueue"] is True and data["queueItem"]["_class"] == "hudson.model.Queue$WaitingItem"
    )
    Job.objects.filter(pk=job.pk).update(disabled=True)
    data = as_viewer.get("/job/hello/api/json").json()
    assert data["color"] == "disabled" and data["buildable"] is False


def test_queue_item_api_is_persistent(as_operator):
    job = make_job("hello")
    item, _ = services.schedule_build(job, "Started by timer")
    data = as_operator.get(f"/queue/item/{item.pk}/api/json").json()
    assert data["_class"] == "hudson.model.Queue$WaitingItem"
    assert data["id"] == item.pk and data["url"] == f"queue/item/{item.pk}/"
    assert data["why"].startswith("In the quiet period. Expires in")
    assert data["blocked"] is False and data["buildable"] is False
    assert data["inQueueSince"] == int(item.in_queue_since.timestamp() * 1000)
    assert data["task"]["name"] == "hello" and data["task"]["url"] == "http://testserver/job/hello/"
    assert "executable" not in data

    # The item left the queue: it becomes a build, and stays readable long after (Jenkins: 5 min).
    build = make_build(job, 1, status="running")
    QueueItem.objects.filter(pk=item.pk).update(
        state=QueueItem.State.LEFT, build=build, left_at=timezone.now() - timedelta(days=3)
    )
    data = as_operator.get(f"/queue/item/{item.pk}/api/json").json()
    assert data["_class"] == "hudson.model.Queue$LeftItem"
    assert data["executable"] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 1,
        "url": "http://testserver/job/hello/1/",
    }
    assert data["cancelled"] is False and data["why"] is None

    other, _ = services.schedule_build(make_job("other"), "Started by timer")
    services.cancel_item(other.pk)
    data = as_operator.get(f"/queue/item/{other.pk}/api/json").json()
    assert data["cancelled"] is True and data["executable"] is None
    assert as_operator.get("/queue/item/999999/api/json").status_code == 404


def test_queue_item_page(as_viewer):
    job = make_job("hello")
    item, _ = services.schedule_build(job, "Started by user admin")
    page = as_viewer.get(f"/queue/item/{item.pk}/")
    text = text_of(page)
    assert page.status_code == 200
    assert "Build request #" in text and "Started by user admin" in text
    assert "In the quiet period" in text
    assert 'hx-trigger="every 1s"' in page.content.decode()
    build = make_build(job, 1, status="running")
    QueueItem.objects.filter(pk=item.pk).update(state=QueueItem.State.LEFT, build=build)
    partial = as_viewer.get(f"/queue/item/{item.pk}/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 286
    assert "Started as hello #1" in text_of(partial)
