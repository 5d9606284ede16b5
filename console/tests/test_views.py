"""Console pages through the Django test client: sign-in, the frame, dashboard, Manage Steward,
Nodes placeholder, System Information, runtime checks, error pages, the admin and the assets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.urls import reverse

from console.models import RuntimeCheck
from console.testing import PASSWORD, make_persona
from console.views import page_not_found, permission_denied, server_error

pytestmark = pytest.mark.django_db

ICON_NAMES = (
    "plus gear trash key folder user users computer info lock back play stop list search shield "
    "terminal refresh move edit check x warning clock home logout file certificate globe tag"
).split()

SIGNED_IN_PAGES = [
    "/",
    "/manage/",
    "/manage/systemInfo",
    "/manage/users/",
    "/manage/users/new",
    "/me/account/",
]


@pytest.fixture
def nobody(db):
    """A signed-in user in no group: may see the frame, nothing more."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("nadia", password=PASSWORD)


@pytest.fixture
def nobody_client(client, nobody):
    client.force_login(nobody)
    return client


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _words(response) -> str:
    """What a reader sees: the text without tags."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


# --- Sign-in


@pytest.mark.parametrize("url", SIGNED_IN_PAGES + ["/manage/runtimeCheck/1/"])
def test_every_page_needs_a_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={url}"


def test_health_needs_no_sign_in(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_sign_in_page(client):
    response = client.get("/login?next=/manage/")
    assert response.status_code == 200
    text = _text(response)
    assert "Sign in to Steward" in text
    for label in ("Username", "Password", "Keep me signed in"):
        assert label in text
    assert 'name="next" value="/manage/"' in text
    # The sign-in page stands alone: no side panel, no breadcrumbs.
    assert "side-panel" not in text and "breadcrumbs" not in text


def test_sign_in_goes_to_next_and_ends_with_the_browser(client, viewer):
    response = client.post(
        "/login", {"username": "victor", "password": PASSWORD, "next": "/manage/systemInfo"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/manage/systemInfo"
    assert client.session[SESSION_KEY] == str(viewer.pk)
    assert client.session.get_expire_at_browser_close()


def test_keep_me_signed_in_keeps_the_session(client, viewer):
    response = client.post(
        "/login", {"username": "victor", "password": PASSWORD, "remember_me": "on"}
    )
    assert response["Location"] == "/"
    assert not client.session.get_expire_at_browser_close()


@pytest.mark.parametrize(
    ("username", "password"), [("victor", "wrong-password"), ("nobody-here", PASSWORD)]
)
def test_wrong_sign_in_never_says_which_field_was_wrong(client, viewer, username, password):
    response = client.post("/login", {"username": username, "password": password})
    assert response.status_code == 200
    text = _text(response)
    assert "Invalid username or password" in text
    assert password not in text
    assert SESSION_KEY not in client.session


def test_signed_in_user_skips_the_sign_in_page(viewer_client):
    response = viewer_client.get("/login")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_sign_out_is_a_post(viewer_client):
    assert viewer_client.get("/logout").status_code == 405
    response = viewer_client.post("/logout")
    assert response.status_code == 302
    assert response["Location"] == "/login"
    assert SESSION_KEY not in viewer_client.session
    assert viewer_client.get("/").status_code == 302


# --- The frame


def test_frame_has_header_user_menu_breadcrumbs_and_side_panel(operator_client):
    operator_client.get("/")  # nothing special: the frame is the same on every page
    response = operator_client.get("/manage/systemInfo")
    text = _text(response)
    assert '<header class="page-header">' in text
    assert 'class="brand"' in text and ">Steward</span>" in text
    assert 'class="user-name">olivia</span>' in text
    for item in ("My account", "API Token", "Sign out"):
        assert item in text
    assert 'href="/me/account/#api-token"' in text
    crumbs = re.search(r'<nav class="breadcrumbs".*?</nav>', text).group(0)
    assert re.findall(r">([^<>]+)</a>", crumbs) == [
        "Dashboard",
        "Manage Steward",
        "System Information",
    ]
    assert '<aside class="side-panel"' in text
    assert 'class="task-link active"' in text


def test_header_shows_the_full_name_when_there_is_one(client):
    user = make_persona("fiona", "Viewers", first_name="Fiona", last_name="Frame")
    client.force_login(user)
    assert 'class="user-name">Fiona Frame</span>' in _text(client.get("/"))


def test_pages_load_nothing_from_other_sites(admin_client):
    for url in SIGNED_IN_PAGES:
        text = _text(admin_client.get(url))
        assert not re.search(r'(src|href)="(https?:)?//', text), url
        assert "/static/steward/steward.css" in text
        assert "/static/steward/steward.js" in text


# --- Dashboard


def test_dashboard_welcomes_with_next_steps(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 200
    text = _text(response)
    assert "Welcome to Steward!" in text
    assert f'href="{reverse("nodes:list")}"' in text and "Set up an agent" in text
    assert f'href="{reverse("credentials:index")}"' in text and "Manage credentials" in text
    assert "Manage Steward" in text and "My account" in text and "People" in text
    # New Item is a real task for users who may create jobs.
    assert re.search(r'<a class="task-link" href="/newJob">.*?New Item', text)


def test_dashboard_for_a_viewer_has_no_people_and_no_runtime_test(viewer_client):
    text = _text(viewer_client.get("/"))
    assert "Welcome to Steward!" in text
    assert "Set up an agent" in text and "Manage credentials" in text
    assert ">People<" not in text
    assert "Test the runtime" not in text
    assert 'href="/newJob"' not in text


def test_dashboard_for_a_user_in_no_group_offers_nothing_it_cannot_open(nobody_client):
    text = _text(nobody_client.get("/"))
    assert "Welcome to Steward!" in text
    assert "Set up an agent" not in text and "Manage credentials" not in text
    assert f'href="{reverse("nodes:list")}"' not in text


# --- Manage Steward


def _tiles(response) -> list[str]:
    return re.findall(r'class="tile-title">([^<]+)<', _text(response))


def test_manage_shows_every_tile_to_an_administrator(admin_client):
    response = admin_client.get("/manage/")
    text = _text(response)
    assert "<h1>Manage Steward</h1>" in text
    assert re.findall(r'<h2 id="section-\d">([^<]+)</h2>', text) == [
        "System Configuration",
        "Security",
        "Status Information",
    ]
    assert _tiles(response) == ["Nodes", "Credentials", "Users", "System Information"]
    for description in (
        "Add, remove, control and monitor the various nodes that Steward runs jobs on.",
        "Configure credentials",
        "Create/delete/modify users that can log in to this Steward",
        "Displays various environmental information to assist trouble-shooting.",
    ):
        assert description in text
    assert 'href="/manage/users/"' in text and 'href="/manage/systemInfo"' in text


@pytest.mark.parametrize("persona", ["operator_client", "viewer_client"])
def test_manage_hides_the_users_tile_from_operators_and_viewers(request, persona):
    response = request.getfixturevalue(persona).get("/manage/")
    assert _tiles(response) == ["Nodes", "Credentials", "System Information"]


def test_manage_for_a_user_in_no_group_is_empty(nobody_client):
    response = nobody_client.get("/manage/")
    assert response.status_code == 200
    assert _tiles(response) == []
    assert "There is nothing here you have permission to manage." in _text(response)


# --- System Information and runtime checks


def test_system_information_shows_facts_and_recent_checks(operator_client, operator):
    check = RuntimeCheck.objects.create(requested_by=operator, status="done", steps_done=5)
    response = operator_client.get("/manage/systemInfo")
    assert response.status_code == 200
    text = _text(response)
    for fact in ("Python", "Django", "Database", "Celery broker", "Channel layer", "STEWARD_HOME"):
        assert fact in text
    assert f'href="/manage/runtimeCheck/{check.pk}/"' in text
    assert "status-success" in text
    assert 'action="/manage/runtimeCheck"' in text and "Test the runtime" in text


def test_system_information_without_checks_says_so(operator_client):
    assert "No runtime check has run yet." in _text(operator_client.get("/manage/systemInfo"))


def test_viewer_sees_system_information_but_not_the_test_button(viewer_client):
    text = _text(viewer_client.get("/manage/systemInfo"))
    assert "System Information" in text
    assert "Test the runtime" not in text
    assert 'action="/manage/runtimeCheck"' not in text


def test_system_information_needs_the_view_permission(nobody_client):
    response = nobody_client.get("/manage/systemInfo")
    assert response.status_code == 403
    assert "nadia is missing the Runtime check/View permission" in _words(response)


def test_system_information_shows_no_secret(admin_client, settings):
    text = _text(admin_client.get("/manage/systemInfo"))
    assert settings.SECRET_KEY not in text


def test_starting_a_runtime_check_creates_it_and_opens_its_page(operator_client, operator):
    response = operator_client.post("/manage/runtimeCheck")
    check = RuntimeCheck.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/manage/runtimeCheck/{check.pk}/"
    assert check.requested_by == operator
    assert operator_client.get("/manage/runtimeCheck").status_code == 405


def test_a_viewer_cannot_start_a_runtime_check(viewer_client):
    response = viewer_client.post("/manage/runtimeCheck")
    assert response.status_code == 403
    assert "victor is missing the Runtime check/Create permission" in _words(response)
    assert not RuntimeCheck.objects.exists()


def test_runtime_check_page_follows_its_websocket(viewer_client, operator):
    check = RuntimeCheck.objects.create(requested_by=operator)
    response = viewer_client.get(f"/manage/runtimeCheck/{check.pk}/")
    assert response.status_code == 200
    text = _text(response)
    assert f'data-ws-path="/ws/runtime-check/{check.pk}/"' in text
    assert 'id="check-status" data-status="queued">Queued<' in text
    assert 'id="check-events"' in text
    assert "Run again" not in text  # a viewer has no management action


def test_runtime_check_page_of_an_unknown_check_is_404(viewer_client):
    assert viewer_client.get("/manage/runtimeCheck/999/").status_code == 404


# --- Error pages


def test_403_names_the_missing_permission(viewer_client):
    response = viewer_client.get("/manage/users/")
    assert response.status_code == 403
    text = _text(response)
    assert "<title>Access Denied [Steward]</title>" in text
    assert "<h1>Access Denied</h1>" in text
    assert "<strong>victor</strong> is missing the <strong>User/View</strong> permission" in text


def test_403_without_a_known_permission_is_a_plain_message(viewer):
    request = RequestFactory().get("/somewhere")
    request.user = viewer
    for exception in (PermissionDenied(), PermissionDenied("some words"), None):
        text = _text(permission_denied(request, exception))
        assert "Access Denied" in text
        assert "You are not allowed to do this." in text
        assert "is missing the" not in text


def test_403_for_an_anonymous_user_is_plain():
    request = RequestFactory().get("/x")
    request.user = AnonymousUser()
    response = permission_denied(request, PermissionDenied("auth.view_user"))
    assert response.status_code == 403
    assert "is missing the" not in _text(response)


def test_404_is_styled_and_echoes_nothing(viewer_client):
    response = viewer_client.get("/no-such-page-4f1d2?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 404
    text = _text(response)
    assert "<h1>Not Found</h1>" in text
    assert "steward.css" in text
    assert "4f1d2" not in text and "alert(1)" not in text


def test_404_handler_for_an_anonymous_user(client):
    request = RequestFactory().get("/zzz")
    request.user = AnonymousUser()
    response = page_not_found(request, None)
    assert response.status_code == 404
    assert "user-menu" not in _text(response)


def test_500_is_styled_and_never_echoes_the_request(admin):
    marker = "leaked-7d3c"
    request = RequestFactory().post(f"/{marker}?token={marker}", {"password": marker})
    request.user = admin
    response = server_error(request)
    assert response.status_code == 500
    text = _text(response)
    assert "A problem occurred while processing the request." in text
    assert "steward.css" in text
    assert marker not in text
    assert "admin" not in text.replace("administrator", "")  # not even who was signed in


# --- Django admin


def test_every_console_model_is_in_the_admin(admin_client):
    from django.apps import apps

    for model in apps.get_app_config("console").get_models():
        assert django_admin.site.is_registered(model), model
    RuntimeCheck.objects.create()
    assert admin_client.get("/admin/").status_code == 200
    assert admin_client.get("/admin/console/runtimecheck/").status_code == 200
    # Checks are started from System Information (which enqueues them), not added by hand.
    assert admin_client.get("/admin/console/runtimecheck/add/").status_code == 403


def test_admin_is_for_staff_only(viewer_client):
    response = viewer_client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- Assets and partials


def test_icon_sprite_has_every_icon_the_templates_use():
    sprite = Path(finders.find("steward/icons.svg")).read_text()
    symbols = set(re.findall(r'<symbol id="([a-z-]+)"', sprite))
    assert set(ICON_NAMES) <= symbols
    templates = Path(__file__).resolve().parents[2] / "templates"
    used = set()
    for path in templates.rglob("*.html"):
        used |= set(re.findall(r'icon\.html" with name="([a-z-]+)"', path.read_text()))
    assert used, "no icon found in the templates"
    assert used <= symbols, used - symbols


def test_stylesheet_and_script_cover_the_shared_classes():
    css = Path(finders.find("steward/steward.css")).read_text()
    for selector in (
        ".app-bar",
        ".app-bar-actions",
        "table.jenkins-table",
        "table.sortable",
        ".steward-form",
        "section.card",
        ".btn-primary",
        ".btn-secondary",
        ".btn-danger",
        ".notice-info",
        ".notice-warning",
        ".notice-error",
        "p.empty",
        "dl.facts",
        ".field-error",
        ".field.required",
        ".tiles",
        ".side-panel",
        ".breadcrumbs",
        ".page-header",
        ".status-icon",
    ):
        assert selector in css, selector
    js = Path(finders.find("steward/steward.js")).read_text()
    assert "data-confirm" in js and "table.sortable" in js
    follower = Path(finders.find("steward/runtime-check.js")).read_text()
    assert "dataset.ws" in follower and "data-ws-path" in follower  # the page gives the path


def test_task_partial_renders_links_posts_and_disabled_tasks(rf, viewer):
    from django.template import engines

    template = engines["django"].from_string(
        '{% include "partials/task.html" with href="/a" icon="gear" label="Configure" active=True %}'
        '{% include "partials/task.html" with href="/b" icon="trash" label="Delete" method="post" confirm="Sure?" %}'
        '{% include "partials/task.html" with href="" icon="plus" label="New" disabled="Not yet" %}'
    )
    request = rf.get("/")
    request.user = viewer
    html = re.sub(r"\s+", " ", template.render({}, request))
    assert '<a class="task-link active" href="/a" aria-current="page">' in html
    assert '<form method="post" action="/b" data-confirm="Sure?">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<span class="task-link disabled" aria-disabled="true" title="Not yet">' in html
