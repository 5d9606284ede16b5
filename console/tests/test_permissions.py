"""The seeded groups (console/permissions.py) and how the console checks and names permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission

from console.permissions import (
    ADMINISTRATORS,
    MANAGED_APPS,
    OPERATORS,
    VIEWERS,
    can,
    sync_groups,
)
from console.views import permission_label

pytestmark = pytest.mark.django_db


def _codenames(group_name: str, app_label: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return set(
        group.permissions.filter(content_type__app_label=app_label).values_list(
            "codename", flat=True
        )
    )


def _all_codenames(app_label: str) -> set[str]:
    return set(
        Permission.objects.filter(content_type__app_label=app_label).values_list(
            "codename", flat=True
        )
    )


def _with_action(app_label: str, *actions: str) -> set[str]:
    return {c for c in _all_codenames(app_label) if c.split("_", 1)[0] in actions}


def test_migrate_seeds_the_three_groups():
    # post_migrate ran sync_groups when the test database was built.
    assert set(Group.objects.values_list("name", flat=True)) >= {ADMINISTRATORS, OPERATORS, VIEWERS}


def test_every_managed_app_has_the_four_default_permissions_per_model():
    # The seeding below is only meaningful if the apps' permissions exist.
    console = _all_codenames("console")
    for action in ("view", "add", "change", "delete"):
        assert f"{action}_runtimecheck" in console


@pytest.mark.parametrize("app_label", MANAGED_APPS + ("auth",))
def test_administrators_have_every_permission_including_custom_ones(app_label):
    assert _codenames(ADMINISTRATORS, app_label) == _all_codenames(app_label)


def test_operators_run_the_farm_but_manage_neither_credentials_nor_users():
    assert _codenames(OPERATORS, "nodes") == _all_codenames("nodes")
    assert _codenames(OPERATORS, "builds") == _all_codenames("builds")
    assert _codenames(OPERATORS, "credentials") == _with_action("credentials", "view")
    assert _codenames(OPERATORS, "console") == _with_action("console", "view", "add")
    assert _codenames(OPERATORS, "auth") == set()


def test_viewers_only_look():
    for app_label in MANAGED_APPS:
        assert _codenames(VIEWERS, app_label) == _with_action(app_label, "view"), app_label
    assert _codenames(VIEWERS, "auth") == set()
    assert "add_runtimecheck" not in _codenames(VIEWERS, "console")


def test_custom_permissions_follow_the_app_rule():
    """A custom permission (not view/add/change/delete) goes to Administrators always, to
    Operators where they hold the whole app, and never to Viewers."""
    from django.contrib.contenttypes.models import ContentType

    from console.models import RuntimeCheck

    ct = ContentType.objects.get_for_model(RuntimeCheck)
    Permission.objects.create(codename="rerun_runtimecheck", name="Can rerun", content_type=ct)
    sync_groups()
    assert "rerun_runtimecheck" in _codenames(ADMINISTRATORS, "console")
    assert "rerun_runtimecheck" not in _codenames(OPERATORS, "console")  # console: view, add
    assert "rerun_runtimecheck" not in _codenames(VIEWERS, "console")


def test_sync_groups_is_idempotent_and_repairs_drift():
    before = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    sync_groups()
    viewers = Group.objects.get(name=VIEWERS)
    # Someone gave viewers a management permission by hand, and removed one of theirs.
    viewers.permissions.add(Permission.objects.get(codename="add_runtimecheck"))
    viewers.permissions.remove(Permission.objects.get(codename="view_runtimecheck"))
    sync_groups()
    after = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    assert after == before
    assert Group.objects.filter(name__in=[ADMINISTRATORS, OPERATORS, VIEWERS]).count() == 3


def test_can_asks_the_groups(admin, operator, viewer):
    assert can(admin, "auth.add_user")
    assert can(operator, "console.add_runtimecheck")
    assert not can(operator, "auth.view_user")
    assert can(viewer, "console.view_runtimecheck")
    assert not can(viewer, "console.add_runtimecheck")
    assert not can(viewer, "credentials.add_credential")


def test_can_refuses_anonymous_and_inactive_users(viewer):
    assert not can(AnonymousUser(), "console.view_runtimecheck")
    assert not can(None, "console.view_runtimecheck")
    viewer.is_active = False
    viewer.save()
    viewer = get_user_model().objects.get(pk=viewer.pk)
    assert not can(viewer, "console.view_runtimecheck")


@pytest.mark.parametrize(
    ("perm", "label"),
    [
        ("auth.view_user", "User/View"),
        ("auth.add_user", "User/Create"),
        ("auth.change_user", "User/Update"),
        ("auth.delete_user", "User/Delete"),
        ("console.view_runtimecheck", "Runtime check/View"),
        ("console.add_runtimecheck", "Runtime check/Create"),
    ],
)
def test_permission_label_in_jenkins_style(perm, label):
    assert permission_label(perm) == label


def test_permission_label_of_a_custom_permission_uses_its_name():
    from django.contrib.contenttypes.models import ContentType

    from console.models import RuntimeCheck

    ct = ContentType.objects.get_for_model(RuntimeCheck)
    Permission.objects.create(codename="rerun_runtimecheck", name="can rerun", content_type=ct)
    assert permission_label("console.rerun_runtimecheck") == "Runtime check/Can rerun"


@pytest.mark.parametrize("text", ["auth.no_such_permission", "not a permission", "", "CSRF failed"])
def test_permission_label_of_anything_else_is_none(text):
    assert permission_label(text) is None
