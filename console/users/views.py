"""Users (Manage Steward › Users, Administrators only) and My account (every signed-in user)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console.users.forms import CreateUserForm, EditUserForm, ResetPasswordForm
from console.views import permission_required

User = get_user_model()


@permission_required("auth.view_user")
def user_list(request: HttpRequest) -> HttpResponse:
    users = User.objects.order_by("username").prefetch_related("groups")
    return render(request, "console/users/list.html", {"users": users})


@permission_required("auth.add_user")
def user_create(request: HttpRequest) -> HttpResponse:
    form = CreateUserForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        messages.success(request, f"User ‘{user.get_username()}’ created.")
        return redirect("users")
    return render(request, "console/users/create.html", {"form": form})


def _user_or_404(username: str):
    return get_object_or_404(User.objects.prefetch_related("groups"), username=username)


@permission_required("auth.change_user")
def user_edit(request: HttpRequest, username: str) -> HttpResponse:
    subject = _user_or_404(username)
    form = EditUserForm(request.POST or None, instance=subject, acting_user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"User ‘{subject.get_username()}’ saved.")
        return redirect("user-edit", username=subject.get_username())
    password_form = ResetPasswordForm(subject)
    return render(
        request,
        "console/users/edit.html",
        {"subject": subject, "form": form, "password_form": password_form},
    )


@require_POST
@permission_required("auth.change_user")
def user_reset_password(request: HttpRequest, username: str) -> HttpResponse:
    subject = _user_or_404(username)
    password_form = ResetPasswordForm(subject, request.POST)
    if password_form.is_valid():
        password_form.save()
        if subject.pk == request.user.pk:
            update_session_auth_hash(request, subject)
        messages.success(request, f"The password of ‘{subject.get_username()}’ was changed.")
        return redirect("user-edit", username=subject.get_username())
    form = EditUserForm(instance=subject, acting_user=request.user)
    return render(
        request,
        "console/users/edit.html",
        {"subject": subject, "form": form, "password_form": password_form},
        status=400,
    )


@permission_required("auth.delete_user")
def user_delete(request: HttpRequest, username: str) -> HttpResponse:
    subject = _user_or_404(username)
    is_self = subject.pk == request.user.pk
    if request.method == "POST" and not is_self:
        subject.delete()
        messages.success(request, f"User ‘{username}’ deleted.")
        return redirect("users")
    if request.method == "POST":
        messages.error(request, "You cannot delete yourself.")
        return redirect("user-edit", username=username)
    return render(request, "console/users/delete.html", {"subject": subject, "is_self": is_self})


def account(request: HttpRequest) -> HttpResponse:
    """My account: change one's own password; API tokens are announced, not faked."""
    form = PasswordChangeForm(request.user, request.POST or None)
    form.fields["old_password"].label = "Current password"
    if request.method == "POST" and form.is_valid():
        form.save()
        # Keep this session signed in; other sessions of the user end with the old password.
        update_session_auth_hash(request, form.user)
        messages.success(request, "Your password was changed.")
        return redirect("account")
    groups = request.user.groups.order_by("name")
    return render(request, "console/users/account.html", {"form": form, "groups": groups})
