"""Users under Manage Steward (Administrators only) and My account (everyone signed in)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from console.permissions import ADMINISTRATORS, OPERATORS, VIEWERS
from console.testing import PASSWORD, make_persona
from console.users.forms import CreateUserForm, split_full_name

pytestmark = pytest.mark.django_db

User = get_user_model()
NEW_PASSWORD = "sturdy-lantern-47"


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _words(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


def _field_block(html: str, name: str) -> str:
    """The markup of one form field (partials/field.html), up to the next field."""
    start = html.index(f'id="field-{name}"')
    ends = [
        i for i in (html.find('id="field-', start + 1), html.find("form-actions", start)) if i > 0
    ]
    return html[start : min(ends)]


def _group(name: str) -> Group:
    return Group.objects.get(name=name)


def _create_payload(**overrides) -> dict:
    payload = {
        "username": "vera",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "full_name": "Vera  van der Viewer",
        "email": "vera@example.com",
        "group": _group(VIEWERS).pk,
    }
    payload.update(overrides)
    return payload


# --- List


def test_user_list_shows_who_can_sign_in(admin_client, admin, operator, viewer):
    User.objects.filter(pk=viewer.pk).update(first_name="Victor", last_name="Viewer")
    response = admin_client.get("/manage/users/")
    assert response.status_code == 200
    text = _text(response)
    assert "<h1>Users</h1>" in text
    for row in ("admin", "olivia", "victor"):
        assert f'id="user-{row}"' in text
    victor = re.search(r'<tr id="user-victor">.*?</tr>', text).group(0)
    assert "Victor Viewer" in victor and ">Viewers<" in victor and "Never" in victor
    assert 'href="/manage/users/victor/"' in victor
    assert 'data-confirm="Delete the user ‘victor’?"' in victor
    me = re.search(r'<tr id="user-admin">.*?</tr>', text).group(0)
    assert ">you<" in me and "data-confirm" not in me  # no delete button for oneself
    assert 'href="/manage/users/new"' in text


def test_user_list_marks_inactive_users(admin_client, viewer):
    User.objects.filter(pk=viewer.pk).update(is_active=False)
    row = re.search(r'<tr id="user-victor">.*?</tr>', _text(admin_client.get("/manage/users/")))
    assert "status-disabled" in row.group(0) and ">inactive<" in row.group(0)


def test_user_list_query_count_does_not_grow_with_users(
    admin_client, django_assert_max_num_queries
):
    for i in range(3):
        make_persona(f"user{i}", VIEWERS)
    with django_assert_max_num_queries(20) as few:
        admin_client.get("/manage/users/")
    for i in range(3, 12):
        make_persona(f"user{i}", OPERATORS)
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get("/manage/users/")


@pytest.mark.parametrize(
    ("persona", "url", "permission"),
    [
        ("operator_client", "/manage/users/", "User/View"),
        ("viewer_client", "/manage/users/", "User/View"),
        ("operator_client", "/manage/users/new", "User/Create"),
        ("viewer_client", "/manage/users/admin/", "User/Update"),
        ("viewer_client", "/manage/users/admin/delete", "User/Delete"),
    ],
)
def test_users_screens_are_for_administrators_only(request, admin, persona, url, permission):
    client = request.getfixturevalue(persona)
    response = client.get(url)
    assert response.status_code == 403
    assert f"is missing the {permission} permission" in _words(response)


# --- Create


def test_create_user_form_is_jenkins_create_user(admin_client):
    text = _text(admin_client.get("/manage/users/new"))
    labels = re.findall(
        r'<label for="id_[a-z0-9_]+">([^<]+)</label>|<legend>([^<]+)</legend>', text
    )
    assert ["".join(pair) for pair in labels] == [
        "Username",
        "Password",
        "Confirm password",
        "Full name",
        "E-mail address",
        "Group",
    ]
    for group in (ADMINISTRATORS, OPERATORS, VIEWERS):
        assert f"{group}</label>" in text
    assert "Your password must contain at least 8 characters." in text  # Django's validators


def test_create_user_puts_them_in_the_group(admin_client):
    response = admin_client.post("/manage/users/new", _create_payload())
    assert response.status_code == 302
    assert response["Location"] == "/manage/users/"
    vera = User.objects.get(username="vera")
    assert vera.check_password(NEW_PASSWORD)
    assert vera.get_full_name() == "Vera van der Viewer"
    assert vera.email == "vera@example.com"
    assert list(vera.groups.values_list("name", flat=True)) == [VIEWERS]
    assert not vera.is_staff and not vera.is_superuser
    assert vera.has_perm("console.view_runtimecheck")
    assert not vera.has_perm("console.add_runtimecheck")
    assert "User ‘vera’ created." in _text(admin_client.get(response["Location"]))


def test_a_new_administrator_may_open_the_django_admin(admin_client):
    admin_client.post(
        "/manage/users/new", _create_payload(username="ada", group=_group(ADMINISTRATORS).pk)
    )
    ada = User.objects.get(username="ada")
    assert ada.is_staff and ada.has_perm("auth.add_user")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password2": "something-else-1"}, "password2", "The two password fields didn’t match."),
        (
            {"password1": "12345678", "password2": "12345678"},
            "password2",
            "This password is entirely numeric.",
        ),
        (
            {"password1": "password", "password2": "password"},
            "password2",
            "This password is too common.",
        ),
        ({"username": "Admin"}, "username", "A user with that username already exists."),
        ({"username": "bad name!"}, "username", None),
        ({"group": ""}, "group", "This field is required."),
        ({"email": "not-an-address"}, "email", "Enter a valid email address."),
    ],
)
def test_create_user_rejects_bad_input_next_to_the_field(
    admin_client, admin, overrides, field, message
):
    response = admin_client.post("/manage/users/new", _create_payload(**overrides))
    assert response.status_code == 200
    text = _text(response)
    block = _field_block(text, field)
    assert 'class="field-error"' in block, f"no error shown at {field}"
    if message:
        assert message in block
    assert User.objects.count() == 1
    assert NEW_PASSWORD not in text and "12345678" not in text


def test_create_form_group_choices_are_the_seeded_groups_only():
    Group.objects.create(name="Strangers")
    form = CreateUserForm()
    assert [label for _, label in form.fields["group"].choices] == [
        ADMINISTRATORS,
        OPERATORS,
        VIEWERS,
    ]
    stranger = Group.objects.get(name="Strangers")
    form = CreateUserForm(data=_create_payload(group=stranger.pk))
    assert not form.is_valid() and "group" in form.errors


def test_an_operator_cannot_create_users(operator_client):
    response = operator_client.post("/manage/users/new", _create_payload())
    assert response.status_code == 403
    assert not User.objects.filter(username="vera").exists()


# --- Edit, reset password


def test_edit_user_changes_groups_name_and_active(admin_client, viewer):
    page = _text(admin_client.get("/manage/users/victor/"))
    assert "Configure" in page and "Reset password" in page
    assert 'href="/manage/users/victor/delete"' in page
    response = admin_client.post(
        "/manage/users/victor/",
        {
            "full_name": "Victor Later",
            "email": "v@example.com",
            "groups": [_group(OPERATORS).pk, _group(VIEWERS).pk],
        },
    )
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.get_full_name() == "Victor Later"
    assert set(viewer.groups.values_list("name", flat=True)) == {OPERATORS, VIEWERS}
    assert not viewer.is_active  # the unchecked box
    assert not viewer.is_staff


def test_an_inactive_user_cannot_sign_in(admin_client, viewer):
    admin_client.post("/manage/users/victor/", {"groups": [_group(VIEWERS).pk]})
    browser = Client()
    response = browser.post("/login", {"username": "victor", "password": PASSWORD})
    assert response.status_code == 200
    assert "Invalid username or password" in _words(response)
    assert SESSION_KEY not in browser.session


def test_administrators_cannot_lock_themselves_out(client):
    boss = make_persona("boss", ADMINISTRATORS)
    client.force_login(boss)
    response = client.post("/manage/users/boss/", {"groups": [_group(VIEWERS).pk]})
    assert response.status_code == 200
    text = _words(response)
    assert "You cannot deactivate your own account." in text
    assert "You cannot remove yourself from the Administrators group." in text
    boss.refresh_from_db()
    assert boss.is_active and boss.groups.filter(name=ADMINISTRATORS).exists()


def test_edit_unknown_user_is_404(admin_client):
    assert admin_client.get("/manage/users/nobody-here/").status_code == 404


def test_reset_password(admin_client, viewer):
    response = admin_client.post(
        "/manage/users/victor/password",
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.check_password(NEW_PASSWORD)


def test_reset_password_validates(admin_client, viewer):
    response = admin_client.post(
        "/manage/users/victor/password", {"new_password1": "short", "new_password2": "other"}
    )
    assert response.status_code == 400
    text = _words(response)
    assert "The two password fields didn’t match." in text
    viewer.refresh_from_db()
    assert viewer.check_password(PASSWORD)


def test_reset_password_is_a_post_for_administrators(admin_client, operator_client, viewer):
    assert admin_client.get("/manage/users/victor/password").status_code == 405
    response = operator_client.post(
        "/manage/users/victor/password",
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 403
    viewer.refresh_from_db()
    assert viewer.check_password(PASSWORD)


# --- Delete


def test_delete_asks_then_deletes(admin_client, viewer):
    page = _words(admin_client.get("/manage/users/victor/delete"))
    assert "Are you sure about deleting the user ‘victor’ from Steward?" in page
    assert User.objects.filter(username="victor").exists()
    response = admin_client.post("/manage/users/victor/delete")
    assert response.status_code == 302
    assert response["Location"] == "/manage/users/"
    assert not User.objects.filter(username="victor").exists()


def test_nobody_deletes_themselves(admin_client, admin):
    page = _words(admin_client.get("/manage/users/admin/delete"))
    assert "You cannot delete yourself." in page
    assert 'href="/manage/users/admin/delete"' not in _text(
        admin_client.get("/manage/users/admin/")
    )
    response = admin_client.post("/manage/users/admin/delete")
    assert response.status_code == 302
    assert User.objects.filter(pk=admin.pk).exists()
    assert "You cannot delete yourself." in _words(admin_client.get(response["Location"]))


def test_a_viewer_cannot_delete(viewer_client, operator):
    assert viewer_client.post("/manage/users/olivia/delete").status_code == 403
    assert User.objects.filter(pk=operator.pk).exists()


# --- My account


def test_my_account_page(viewer_client):
    response = viewer_client.get("/me/account/")
    assert response.status_code == 200
    text = _words(response)
    assert "victor" in text and "Viewers" in text
    assert "Current password" in text and "Change password" in text
    assert "API Token" in text
    assert "API tokens are not available yet." in text


def test_change_own_password_keeps_me_signed_in(viewer_client, viewer):
    response = viewer_client.post(
        "/me/account/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert viewer.check_password(NEW_PASSWORD)
    # Still signed in, with the confirmation shown once.
    assert "Your password was changed." in _words(viewer_client.get("/me/account/"))
    assert viewer_client.get("/").status_code == 200


def test_change_own_password_needs_the_current_one(viewer_client, viewer):
    response = viewer_client.post(
        "/me/account/",
        {"old_password": "guess", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly." in _words(response)
    viewer.refresh_from_db()
    assert viewer.check_password(PASSWORD)


# --- Helpers


@pytest.mark.parametrize(
    ("full_name", "parts"),
    [
        ("", ("", "")),
        ("Ada", ("Ada", "")),
        ("Ada Lovelace", ("Ada", "Lovelace")),
        ("  Vera   van der  Viewer ", ("Vera", "van der Viewer")),
    ],
)
def test_split_full_name_round_trips(full_name, parts):
    assert split_full_name(full_name) == parts
    user = User(first_name=parts[0], last_name=parts[1])
    assert user.get_full_name() == " ".join(full_name.split())
