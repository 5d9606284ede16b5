"""The Manage Credentials pages, as admin, operator and viewer; no secret ever in a page."""

from __future__ import annotations

import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse
from django.views.debug import ExceptionReporter

from credentials import crypto, services, views
from credentials.models import Credential, CredentialUsage, Domain
from credentials.tests.factories import (
    API_TOKEN,
    FILE_CONTENT,
    PASSPHRASE,
    PASSWORD,
    assert_no_secret,
    keystore,
    make_credential,
    make_domain,
    ssh_keygen,
)

pytestmark = pytest.mark.django_db

INDEX = reverse("credentials:index")
STORE = reverse("credentials:store", args=["system"])
GLOBAL = reverse("credentials:domain", args=["system", "_"])
NEW = reverse("credentials:new-credentials", args=["system", "_"])


def url(name: str, credential_id: str, domain: str = "_") -> str:
    return reverse(f"credentials:{name}", args=["system", domain, credential_id])


@pytest.fixture
def one_of_each():
    return [
        make_credential(
            "usernamePassword",
            "git-login",
            username="hidden-user",
            username_secret=True,
            description="Git over HTTPS",
        ),
        make_credential("sshUserPrivateKey", "agent-key", description="Build agents"),
        make_credential("string", "api-token"),
        make_credential("file", "kubeconfig"),
        make_credential("certificate", "client-cert"),
    ]


# --- reading: every persona, no secret anywhere ---------------------------------------------------


@pytest.mark.parametrize("persona", ["admin_client", "operator_client", "viewer_client"])
def test_every_page_renders_without_secrets(request, persona, one_of_each):
    client = request.getfixturevalue(persona)
    pages = [INDEX, STORE, GLOBAL] + [c.get_absolute_url() for c in one_of_each]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_no_secret(response.content.decode(), one_of_each)
    if persona == "admin_client":
        for c in one_of_each:
            response = client.get(url("update-credential", c.credential_id))
            assert response.status_code == 200
            html = response.content.decode()
            assert "Concealed" in html and "Replace" in html
            assert_no_secret(html, one_of_each)


def test_index_lists_credentials_and_stores(admin_client, one_of_each):
    html = admin_client.get(INDEX).content.decode()
    assert "Stores scoped to Steward" in html
    assert "(global)" in html
    for c in one_of_each:
        assert c.credential_id in html
    assert "******/****** (Git over HTTPS)" in html  # a secret username is never the name


def test_domain_page_table(admin_client, one_of_each):
    html = admin_client.get(GLOBAL).content.decode()
    assert "Global credentials (unrestricted)" in html
    assert "Credentials that should be available everywhere." in html
    for header in ("<th>ID</th>", "<th>Name</th>", "<th>Kind</th>", "<th>Description</th>"):
        assert header in html
    for label in (
        "Username with password",
        "SSH Username with private key",
        "Secret text",
        "Secret file",
        "Certificate",
    ):
        assert label in html
    assert "Add Credentials" in html


def test_empty_domain(admin_client):
    assert "This credentials domain is empty." in admin_client.get(GLOBAL).content.decode()


def test_ssh_credential_page_shows_public_key_and_fingerprint(admin_client):
    private, public = ssh_keygen("ed25519")
    response = admin_client.post(
        NEW + "?kind=sshUserPrivateKey",
        {
            "kind": "sshUserPrivateKey",
            "scope": "SYSTEM",
            "username": "jenkins",
            "private_key": private,
            "passphrase": "",
            "credential_id": "agent",
            "description": "",
        },
    )
    assert response.status_code == 302
    credential = Credential.objects.get(credential_id="agent")
    assert response.url == credential.get_absolute_url()
    html = admin_client.get(response.url).content.decode()
    assert public in html
    assert credential.details["fingerprint"] in html
    assert "System (Steward and nodes only)" in html
    assert "This credential has not been recorded as used anywhere." in html
    assert_no_secret(html, [credential])


def test_usage_is_listed(admin_client):
    credential = make_credential("sshUserPrivateKey", "agent")
    services.record_usage(credential, "node", 1, "build-1", "/computer/build-1/")
    html = admin_client.get(credential.get_absolute_url()).content.decode()
    assert "This credential has been recorded as used in the following places:" in html
    assert 'href="/computer/build-1/"' in html


def test_management_controls_hidden_from_operator_and_viewer(
    operator_client, viewer_client, one_of_each
):
    make_domain("Production")
    for client in (operator_client, viewer_client):
        for page in (
            INDEX,
            STORE,
            GLOBAL,
            reverse("credentials:domain", args=["system", "Production"]),
            one_of_each[0].get_absolute_url(),
        ):
            html = client.get(page).content.decode()
            for control in (
                "Add Credentials",
                "Add domain",
                ">Update<",
                ">Delete<",
                ">Move<",
                "Delete domain",
                ">Configure<",
            ):
                assert control not in html, (page, control)


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get(INDEX)
    assert response.status_code == 302 and "/login" in response.url


# --- writing: 403 for operator and viewer, nothing changes --------------------------------------


@pytest.mark.parametrize("persona", ["operator_client", "viewer_client"])
def test_operator_and_viewer_cannot_change_anything(request, persona):
    client = request.getfixturevalue(persona)
    credential = make_credential("string", "t")
    domain = make_domain("Production")
    before = credential.encrypted_secrets
    attempts = [
        (
            NEW + "?kind=string",
            {"kind": "string", "scope": "GLOBAL", "secret": "x", "credential_id": "new"},
        ),
        (
            url("update-credential", "t"),
            {"scope": "GLOBAL", "secret": "y", "secret__replace": "on"},
        ),
        (url("delete-credential", "t"), {}),
        (url("move-credential", "t"), {"destination": "Production"}),
        (reverse("credentials:new-domain", args=["system"]), {"name": "New"}),
        (
            reverse("credentials:configure-domain", args=["system", "Production"]),
            {"name": "Renamed"},
        ),
        (reverse("credentials:delete-domain", args=["system", "Production"]), {}),
    ]
    for target, data in attempts:
        assert client.get(target).status_code == 403, target
        assert client.post(target, data).status_code == 403, target
    credential.refresh_from_db()
    assert credential.encrypted_secrets == before and credential.domain is None
    assert Credential.objects.count() == 1
    assert list(Domain.objects.values_list("name", flat=True)) == [domain.name]


# --- adding each kind ---------------------------------------------------------------------------


def test_add_credentials_starts_with_the_kind_chooser(admin_client):
    html = admin_client.get(NEW).content.decode()
    for kind in (
        "Username with password",
        "SSH Username with private key",
        "Secret text",
        "Secret file",
        "Certificate",
    ):
        assert kind in html
    html = admin_client.get(NEW + "?kind=usernamePassword").content.decode()
    assert "Treat username as secret" in html
    assert "Global (Steward, nodes, items, all child items, etc)" in html
    assert "System (Steward and nodes only)" in html


@pytest.mark.parametrize(
    ("kind", "data", "secret"),
    [
        ("usernamePassword", {"username": "deploy", "password": PASSWORD}, PASSWORD),
        ("string", {"secret": API_TOKEN}, API_TOKEN),
        (
            "file",
            {"file": lambda: SimpleUploadedFile("kubeconfig", FILE_CONTENT)},
            FILE_CONTENT.decode(),
        ),
        (
            "certificate",
            {"keystore": lambda: SimpleUploadedFile("c.p12", keystore("pw-9")), "password": "pw-9"},
            "pw-9",
        ),
    ],
)
def test_add_each_kind(admin_client, kind, data, secret):
    data = {k: v() if callable(v) else v for k, v in data.items()}
    response = admin_client.post(
        NEW + f"?kind={kind}",
        {
            "kind": kind,
            "scope": "GLOBAL",
            "credential_id": f"new-{kind}",
            "description": "added",
            **data,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    credential = Credential.objects.get(credential_id=f"new-{kind}")
    assert credential.kind == kind and credential.description == "added"
    html = admin_client.get(response.url, follow=True).content.decode()
    assert "Credentials created" in html
    assert secret not in html


def test_add_into_a_named_domain(admin_client):
    make_domain("Production")
    target = reverse("credentials:new-credentials", args=["system", "Production"]) + "?kind=string"
    response = admin_client.post(
        target, {"kind": "string", "scope": "GLOBAL", "secret": "x", "credential_id": "p"}
    )
    assert response.status_code == 302
    assert Credential.objects.get(credential_id="p").domain.name == "Production"
    assert response.url == url("credential", "p", "Production")


@pytest.mark.parametrize(
    ("kind", "data", "field", "message"),
    [
        (
            "string",
            {"credential_id": "bad id", "secret": "x"},
            "credential_id",
            "Unacceptable characters",
        ),
        (
            "string",
            {"credential_id": "taken", "secret": "x"},
            "credential_id",
            "This ID is already in use",
        ),
        ("string", {"secret": ""}, "secret", "This field is required."),
        ("usernamePassword", {"username": "", "password": "x"}, "username", "Blank username"),
        (
            "sshUserPrivateKey",
            {"username": "u", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn"},
            "private_key",
            "The private key is truncated",
        ),
        (
            "file",
            {"file": lambda: SimpleUploadedFile("big", b"x" * (1024 * 1024 + 1))},
            "file",
            "The file is too large",
        ),
        (
            "certificate",
            {"keystore": lambda: SimpleUploadedFile("c.p12", b"garbage"), "password": "x"},
            "keystore",
            "not a PKCS#12 keystore",
        ),
    ],
)
def test_bad_input_comes_back_at_the_field_and_nothing_is_saved(
    admin_client, kind, data, field, message
):
    make_credential("string", "taken")
    data = {k: v() if callable(v) else v for k, v in data.items()}
    response = admin_client.post(NEW + f"?kind={kind}", {"kind": kind, "scope": "GLOBAL", **data})
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in e for e in form.errors[field]), form.errors
    html = response.content.decode()
    assert f'id="field-{field}"' in html and message.split("’")[0] in html
    assert Credential.objects.count() == 1


def test_wrong_passphrase_comes_back_without_the_key(admin_client):
    private, _ = ssh_keygen("ed25519", PASSPHRASE)
    response = admin_client.post(
        NEW + "?kind=sshUserPrivateKey",
        {
            "kind": "sshUserPrivateKey",
            "scope": "GLOBAL",
            "username": "u",
            "private_key": private,
            "passphrase": "wrong passphrase",
        },
    )
    html = response.content.decode()
    assert response.context["form"].errors["passphrase"] == [
        "Wrong passphrase: the private key could not be decrypted."
    ]
    assert "wrong passphrase" not in html
    assert private.splitlines()[1] not in html
    assert "Secret values are never sent back to the browser" in html
    assert not Credential.objects.exists()


# --- updating, deleting, moving -----------------------------------------------------------------


def test_edit_description_keeps_the_secret(admin_client):
    credential = make_credential("usernamePassword", "git", username="deploy")
    before = services.secret_values(credential)
    form = admin_client.get(url("update-credential", "git"))
    assert form.context["form"]["password"].value().__class__.__name__ != "str"
    response = admin_client.post(
        url("update-credential", "git"),
        {
            "scope": "GLOBAL",
            "username": "deploy",
            "description": "now with a description",
        },
    )
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.description == "now with a description"
    assert services.secret_values(credential) == before


def test_replace_sets_a_new_secret(admin_client):
    credential = make_credential("string", "t")
    response = admin_client.post(
        url("update-credential", "t"),
        {
            "scope": "SYSTEM",
            "secret": "brand-New-Token-1",
            "secret__replace": "on",
        },
    )
    assert response.status_code == 302
    credential.refresh_from_db()
    assert services.get_secret(credential, "secret") == "brand-New-Token-1"
    assert credential.scope == "SYSTEM"


def test_update_shows_read_only_id(admin_client):
    make_credential("string", "fixed")
    html = admin_client.get(url("update-credential", "fixed")).content.decode()
    assert "The ID cannot be changed after creation." in html
    assert 'name="credential_id"' in html and "disabled" in html


def test_delete_asks_then_deletes(admin_client):
    make_credential("string", "t")
    confirm = admin_client.get(url("delete-credential", "t"))
    assert "Are you sure about deleting" in confirm.content.decode()
    assert Credential.objects.exists()
    response = admin_client.post(url("delete-credential", "t"))
    assert response.status_code == 302 and response.url == GLOBAL
    assert not Credential.objects.exists()


def test_move_to_another_domain(admin_client):
    make_credential("string", "t")
    make_domain("Production")
    html = admin_client.get(url("move-credential", "t")).content.decode()
    assert "Production" in html
    response = admin_client.post(url("move-credential", "t"), {"destination": "Production"})
    assert response.status_code == 302 and response.url == url("credential", "t", "Production")
    assert admin_client.get(url("credential", "t")).status_code == 404
    assert admin_client.get(url("credential", "t", "Production")).status_code == 200


def test_unknown_store_domain_credential_are_404(admin_client):
    assert admin_client.get(reverse("credentials:store", args=["folder"])).status_code == 404
    assert (
        admin_client.get(reverse("credentials:domain", args=["system", "nope"])).status_code == 404
    )
    assert admin_client.get(url("credential", "nope")).status_code == 404


# --- domains ------------------------------------------------------------------------------------


def test_add_configure_delete_domain(admin_client):
    response = admin_client.post(
        reverse("credentials:new-domain", args=["system"]),
        {
            "name": "Build farm",
            "description": "Agents",
            "hostname_includes": "*.farm.example.com",
            "schemes": "ssh",
            "path_case_sensitive": "on",
        },
    )
    domain = Domain.objects.get()
    assert response.status_code == 302 and response.url == domain.get_absolute_url()
    html = admin_client.get(response.url).content.decode()
    assert "*.farm.example.com" in html and "URI scheme" in html
    assert "Build farm" in admin_client.get(STORE).content.decode()

    configure = reverse("credentials:configure-domain", args=["system", "Build farm"])
    assert "*.farm.example.com" in admin_client.get(configure).content.decode()
    admin_client.post(
        configure, {"name": "Farm", "description": "", "hostname_excludes": "db.farm.example.com"}
    )
    domain.refresh_from_db()
    assert domain.name == "Farm"
    assert domain.specifications == [
        {"type": "hostname", "includes": "", "excludes": "db.farm.example.com"}
    ]

    make_credential("string", "in-farm", domain=domain)
    delete = reverse("credentials:delete-domain", args=["system", "Farm"])
    assert (
        "This will delete all credentials in this domain."
        in admin_client.get(delete).content.decode()
    )
    assert admin_client.post(delete).url == STORE
    assert not Domain.objects.exists() and not Credential.objects.exists()


def test_domain_errors_come_back(admin_client):
    make_domain("Production")
    response = admin_client.post(
        reverse("credentials:new-domain", args=["system"]), {"name": "Production"}
    )
    assert response.status_code == 200
    assert "A domain with that name already exists" in response.content.decode()
    response = admin_client.post(reverse("credentials:new-domain", args=["system"]), {"name": ""})
    assert "You must provide a name for the domain" in response.content.decode()


def test_global_domain_cannot_be_configured_or_deleted(admin_client):
    assert (
        admin_client.get(reverse("credentials:configure-domain", args=["system", "_"])).status_code
        == 404
    )
    assert (
        admin_client.post(reverse("credentials:delete-domain", args=["system", "_"])).status_code
        == 404
    )


# --- no N+1 on list pages -----------------------------------------------------------------------


def _many(n: int) -> None:
    domains = [make_domain(f"D{i}") for i in range(3)]
    for i in range(n):
        credential = make_credential(
            "usernamePassword", f"c{i}", domain=domains[i % 3] if i % 2 else None
        )
        services.record_usage(credential, "node", i, f"n{i}")


@pytest.mark.parametrize("count", [3, 12])
def test_pinned_query_counts(viewer_client, django_assert_num_queries, count):
    _many(count)
    # Every page: session, user and the user's permissions (2), then its own queries.
    with django_assert_num_queries(6):  # credentials with their domains; the domains
        viewer_client.get(INDEX)
    with django_assert_num_queries(6):  # counts per domain; the domains
        viewer_client.get(STORE)
    with django_assert_num_queries(5):  # the credentials
        viewer_client.get(GLOBAL)
    with django_assert_num_queries(6):  # the domain; its credentials
        viewer_client.get(reverse("credentials:domain", args=["system", "D1"]))
    with django_assert_num_queries(6):  # the credential; its usage rows
        viewer_client.get(url("credential", "c0"))


# --- secrets never reach error reports, error pages or logs ----------------------------------------


def test_error_reports_scrub_posted_secrets_and_locals(admin, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "create_credential", explode)
    request = RequestFactory().post(
        NEW + "?kind=string",
        {
            "kind": "string",
            "scope": "GLOBAL",
            "secret": "posted-Secret-Walrus-5",
            "credential_id": "x",
        },
    )
    request.user = admin
    request._messages = None
    try:
        views.new_credentials(request, store="system", domain="_")
    except RuntimeError:
        report = ExceptionReporter(request, *sys.exc_info()).get_traceback_text()
    else:  # pragma: no cover
        pytest.fail("the view did not raise")
    assert "database went away" in report
    assert "posted-Secret-Walrus-5" not in report


def test_server_error_page_has_no_secret(admin_client, monkeypatch):
    credential = make_credential("string", "t")

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "update_credential", explode)
    admin_client.raise_request_exception = False
    response = admin_client.post(
        url("update-credential", "t"),
        {
            "scope": "GLOBAL",
            "secret": "typed-Secret-Heron-3",
            "secret__replace": "on",
        },
    )
    assert response.status_code == 500
    html = response.content.decode()
    assert "typed-Secret-Heron-3" not in html
    assert_no_secret(html, [credential])


def test_missing_master_key_is_a_clear_message_when_saving(admin_client, settings, tmp_path):
    settings.STEWARD_MASTER_KEY = ""
    settings.STEWARD_MASTER_KEY_FILE = tmp_path / "absent.key"
    response = admin_client.post(
        NEW + "?kind=string", {"kind": "string", "scope": "GLOBAL", "secret": "x"}
    )
    assert response.status_code == 200
    assert "No credentials master key" in response.content.decode()
    assert not Credential.objects.exists()


def test_update_with_an_undecryptable_secret_says_so(admin_client, settings, tmp_path):
    make_credential("string", "t")
    settings.STEWARD_MASTER_KEY = ""
    settings.STEWARD_MASTER_KEY_FILE = tmp_path / "other.key"
    crypto.create_key_file()
    response = admin_client.get(url("update-credential", "t"))
    assert response.status_code == 500
    assert "cannot be decrypted" in response.content.decode()


def test_usage_rows_cascade_with_the_credential(admin_client):
    credential = make_credential("string", "t")
    services.record_usage(credential, "job", 1, "deploy")
    admin_client.post(url("delete-credential", "t"))
    assert not CredentialUsage.objects.exists()
