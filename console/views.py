"""Console-wide pages: dashboard, sign-in, Manage Jenkins, System Information, error pages."""

from __future__ import annotations

import platform
import sys

import django
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required, permission_required
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console.models import RuntimeCheck
from console.tasks import request_runtime_check


@login_not_required
def health(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "version": settings.STEWARD_VERSION})


class SignInView(LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("login")


def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "console/dashboard.html")


def manage(request: HttpRequest) -> HttpResponse:
    return render(request, "console/manage.html")


def _database_description() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite {connection.Database.sqlite_version} (WAL, IMMEDIATE transactions)"
    return f"PostgreSQL {connection.pg_version // 10000}" if connection.pg_version else "PostgreSQL"


@permission_required("console.view_runtimecheck", raise_exception=True)
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
@permission_required("console.add_runtimecheck", raise_exception=True)
def runtime_check_start(request: HttpRequest) -> HttpResponse:
    check = request_runtime_check(request.user)
    return redirect("runtime-check", check_id=check.pk)


@permission_required("console.view_runtimecheck", raise_exception=True)
def runtime_check(request: HttpRequest, check_id: int) -> HttpResponse:
    check = get_object_or_404(RuntimeCheck, pk=check_id)
    return render(request, "console/runtime_check.html", {"check": check})


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "403.html", status=403)


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors or request data: an error page must never echo input or secrets.
    from django.template import loader

    return HttpResponse(loader.get_template("500.html").render(), status=500)
