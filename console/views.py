"""Console-wide pages: dashboard, sign-in, Manage Steward, System Information, error pages."""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

import django
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import Permission
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.urls import reverse
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from console.models import RuntimeCheck
from console.permissions import can
from console.tasks import request_runtime_check
from console.users.forms import SignInForm

# --- Permissions as the 403 page names them ("victor is missing the User/Create permission").

_PERMISSION_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z0-9_]+$")
_ACTION_LABELS = {"view": "View", "add": "Create", "change": "Update", "delete": "Delete"}


def permission_required(perm: str) -> Callable:
    """Like Django's decorator, but the 403 page can say which permission was missing.

    Raise ``PermissionDenied("app.codename")`` anywhere for the same effect.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not can(request.user, perm):
                raise PermissionDenied(perm)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def permission_label(perm: str) -> str | None:
    """``"auth.add_user"`` → ``"User/Create"`` (Jenkins' "Group/Permission" style)."""
    if not _PERMISSION_NAME.match(perm):
        return None
    app_label, codename = perm.split(".", 1)
    found = (
        Permission.objects.select_related("content_type")
        .filter(content_type__app_label=app_label, codename=codename)
        .first()
    )
    if found is None:
        return None
    model = found.content_type.model_class()
    noun = capfirst(model._meta.verbose_name) if model else capfirst(found.content_type.model)
    action, _, rest = codename.partition("_")
    if action in _ACTION_LABELS and rest == found.content_type.model:
        return f"{noun}/{_ACTION_LABELS[action]}"
    return f"{noun}/{capfirst(found.name)}"


def can_view_app(user, app_label: str) -> bool:
    """May the user see the app's screens at all? (Any permission of it; every group that has
    one also has its view permissions.) Templates ask the same through ``perms.<app>``."""
    return bool(user.is_authenticated and user.is_active and user.has_module_perms(app_label))


# --- Pages


@login_not_required
def health(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "version": settings.STEWARD_VERSION})


class SignInView(LoginView):
    template_name = "console/login.html"
    form_class = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form: SignInForm) -> HttpResponse:
        response = super().form_valid(form)
        if not form.cleaned_data.get("remember_me"):
            # Without "Keep me signed in" the session ends when the browser closes.
            self.request.session.set_expiry(0)
        return response


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


def dashboard(request: HttpRequest) -> HttpResponse:
    """All jobs with their status, and the Build Queue and Build Executor Status widgets."""
    from builds.widgets import dashboard_context

    return render(request, "console/dashboard.html", dashboard_context(request.user))


@dataclass(frozen=True)
class Tile:
    title: str
    description: str
    url: str
    icon: str


def _manage_sections(user) -> list[tuple[str, list[Tile]]]:
    """The tiles of Manage Steward, each only for users who may use what it opens."""
    sections: list[tuple[str, list[Tile]]] = [
        (
            "System Configuration",
            [
                Tile(
                    "Nodes",
                    "Add, remove, control and monitor the various nodes that Steward runs jobs on.",
                    reverse("nodes:list"),
                    "computer",
                ),
            ]
            if can_view_app(user, "nodes")
            else [],
        ),
        (
            "Security",
            [
                tile
                for tile, allowed in (
                    (
                        Tile(
                            "Credentials",
                            "Configure credentials",
                            reverse("credentials:index"),
                            "key",
                        ),
                        can_view_app(user, "credentials"),
                    ),
                    (
                        Tile(
                            "Users",
                            "Create/delete/modify users that can log in to this Steward",
                            reverse("users"),
                            "users",
                        ),
                        can(user, "auth.view_user"),
                    ),
                )
                if allowed
            ],
        ),
        (
            "Status Information",
            [
                Tile(
                    "System Information",
                    "Displays various environmental information to assist trouble-shooting.",
                    reverse("system-info"),
                    "info",
                )
            ]
            if can(user, "console.view_runtimecheck")
            else [],
        ),
    ]
    return [(title, tiles) for title, tiles in sections if tiles]


def manage(request: HttpRequest) -> HttpResponse:
    return render(request, "console/manage.html", {"sections": _manage_sections(request.user)})


def _database_description() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {connection.Database.sqlite_version} (WAL, IMMEDIATE transactions)"
    return f"PostgreSQL {connection.pg_version // 10000}" if connection.pg_version else "PostgreSQL"


@permission_required("console.view_runtimecheck")
def system_info(request: HttpRequest) -> HttpResponse:
    # Never secrets here: only versions and the names of the runtime parts.
    facts = [
        ("Steward", settings.STEWARD_VERSION),
        ("Configuration", "scaled" if settings.STEWARD_SCALED else "embedded default"),
        ("Python", sys.version.split()[0]),
        ("Django", django.get_version()),
        ("Operating system", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Database", _database_description()),
        ("Celery broker", "Redis" if settings.STEWARD_SCALED else "in-process (memory://)"),
        (
            "Channel layer",
            "Redis (channels_redis)" if settings.STEWARD_SCALED else "in-memory",
        ),
        ("Data directory (STEWARD_HOME)", str(settings.STEWARD_HOME)),
    ]
    checks = RuntimeCheck.objects.select_related("requested_by")[:5]
    return render(request, "console/system_info.html", {"facts": facts, "checks": checks})


@require_POST
@permission_required("console.add_runtimecheck")
def runtime_check_start(request: HttpRequest) -> HttpResponse:
    check = request_runtime_check(request.user)
    return redirect("runtime-check", check_id=check.pk)


@permission_required("console.view_runtimecheck")
def runtime_check(request: HttpRequest, check_id: int) -> HttpResponse:
    check = get_object_or_404(RuntimeCheck.objects.select_related("requested_by"), pk=check_id)
    return render(request, "console/runtime_check.html", {"check": check})


# --- Error pages (console/urls.py handler403/404/500)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    missing = None
    if isinstance(exception, PermissionDenied) and exception.args:
        first = exception.args[0]
        if isinstance(first, str):
            missing = permission_label(first)
    return render(request, "403.html", {"missing_permission": missing}, status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # The requested path is not echoed back: nothing the client sent appears on error pages.
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors or request data: an error page must never echo input or secrets.
    return HttpResponse(loader.get_template("500.html").render(), status=500)
