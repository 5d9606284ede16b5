"""Groups and what they may do. One place decides; views, the API and consumers all ask here.

Administrators may do everything; Operators run the farm (nodes, builds, launching with
credentials) but do not manage credentials or users; Viewers only look. Nobody but the
credentials module ever sees a secret, whatever the group.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ADMINISTRATORS = "Administrators"
OPERATORS = "Operators"
VIEWERS = "Viewers"

# app_label -> actions per group. "*" = every permission of the app (including custom ones).
GROUP_PERMISSIONS: dict[str, dict[str, set[str] | str]] = {
    ADMINISTRATORS: {"*": "*"},
    OPERATORS: {
        "credentials": {"view"},
        "nodes": "*",
        "builds": "*",
        "console": {"view", "add"},
    },
    VIEWERS: {
        "credentials": {"view"},
        "nodes": {"view"},
        "builds": {"view"},
        "console": {"view"},
    },
}

MANAGED_APPS = ("console", "credentials", "nodes", "builds")


def _permissions_for(spec: dict[str, set[str] | str]):
    perms = Permission.objects.select_related("content_type")
    if spec.get("*") == "*":
        return list(perms.filter(content_type__app_label__in=MANAGED_APPS + ("auth",)))
    chosen = []
    for perm in perms.filter(content_type__app_label__in=list(spec)):
        actions = spec[perm.content_type.app_label]
        action = perm.codename.split("_", 1)[0]
        if actions == "*" or action in actions:
            chosen.append(perm)
    return chosen


def sync_groups() -> None:
    """Create the three groups and give each exactly its permissions (idempotent)."""
    for name, spec in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(_permissions_for(spec))


def sync_groups_after_migrate(sender, **kwargs) -> None:
    # post_migrate is sent once per app, after that app's permissions are created: syncing on
    # each managed app's signal leaves the groups complete after the last one.
    if getattr(sender, "label", None) in MANAGED_APPS + ("auth",):
        sync_groups()


def can(user, perm: str) -> bool:
    """``can(request.user, "credentials.change_credential")`` — the one permission check."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(perm))
