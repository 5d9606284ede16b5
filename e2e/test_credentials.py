"""Manage Credentials in Chromium: add one credential of each kind, see them listed, edit a
description without seeing or losing the secret, replace a secret, move, delete, domains, and
a viewer who may look but not touch."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from console.testing import PASSWORD, make_persona
from credentials import services
from credentials.models import Credential
from credentials.tests.factories import PASSPHRASE, keystore, make_credential, ssh_keygen

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GIT_PASSWORD = "git-Password-Orca-2231"
API_TOKEN = "api-Token-Pelican-8812"
FILE_BODY = "token: file-Secret-Lynx-4410\n"
KEYSTORE_PASSWORD = "keystore-Pass-Otter-99"


def _admin():
    return make_persona("admin", "Administrators", is_staff=True, is_superuser=True)


def _no_secret_in(page, *secrets: str) -> None:
    html = page.content()
    for secret in secrets:
        assert secret not in html


def _choose_kind(page, url: str, kind_label: str) -> None:
    page.goto(f"{url}/manage/credentials/store/system/domain/_/")
    page.get_by_role("link", name="Add Credentials").first.click()
    expect(page.get_by_role("heading", name="New credentials")).to_be_visible()
    page.get_by_label(kind_label, exact=False).first.check()
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".kind-chosen")).to_contain_text(kind_label)


def test_admin_adds_each_kind_edits_moves_and_deletes(
    browser_page, console_server, login, shot, tmp_path
):
    page, url = browser_page, console_server.url
    _admin()
    login(page, "admin", PASSWORD)

    page.goto(f"{url}/manage/credentials/")
    expect(page.get_by_role("heading", name="Stores scoped to Steward")).to_be_visible()
    shot(page, "credentials-index-empty")
    page.get_by_role("link", name="System", exact=True).first.click()
    expect(page.get_by_role("heading", name="System")).to_be_visible()
    shot(page, "credentials-store")
    page.get_by_role("link", name="Global credentials (unrestricted)").click()
    expect(page.get_by_text("This credentials domain is empty.")).to_be_visible()
    shot(page, "credentials-domain-empty")

    # Username with password
    page.get_by_role("link", name="Add Credentials").first.click()
    shot(page, "credentials-choose-kind")
    page.get_by_label("Username with password").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Username", exact=True).fill("deploy")
    page.get_by_label("Password").fill(GIT_PASSWORD)
    page.get_by_label("ID").fill("git-login")
    page.get_by_label("Description").fill("Git over HTTPS")
    shot(page, "credentials-new-username-password")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Credentials created")).to_be_visible()
    expect(page.locator("#credential-facts")).to_contain_text("Username with password")
    _no_secret_in(page, GIT_PASSWORD)
    shot(page, "credentials-credential-username-password")

    # SSH Username with private key: a wrong passphrase first, then the right one.
    private, public = ssh_keygen("ed25519", PASSPHRASE)
    _choose_kind(page, url, "SSH Username with private key")
    page.get_by_label("Scope").select_option("SYSTEM")
    page.get_by_label("Username", exact=True).fill("agent")
    page.get_by_label("Key", exact=True).fill(private)
    page.get_by_label("Passphrase").fill("not the passphrase")
    page.get_by_label("ID").fill("agent-key")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#field-passphrase .field-error")).to_have_text(
        "Wrong passphrase: the private key could not be decrypted."
    )
    expect(page.get_by_text("Secret values are never sent back to the browser")).to_be_visible()
    _no_secret_in(page, private.splitlines()[1], "not the passphrase")
    shot(page, "credentials-new-ssh-wrong-passphrase")
    page.get_by_label("Key", exact=True).fill(private)
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("pre.public-key")).to_have_text(public)
    fingerprint = Credential.objects.get(credential_id="agent-key").details["fingerprint"]
    expect(page.locator("#public-key")).to_contain_text(fingerprint)
    _no_secret_in(page, private.splitlines()[1], PASSPHRASE)
    shot(page, "credentials-credential-ssh")

    # Secret text
    _choose_kind(page, url, "Secret text")
    page.get_by_label("Secret", exact=True).fill(API_TOKEN)
    page.get_by_label("ID").fill("api-token")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Credentials created")).to_be_visible()

    # Secret file
    secret_file = tmp_path / "kubeconfig.yaml"
    secret_file.write_text(FILE_BODY)
    _choose_kind(page, url, "Secret file")
    page.get_by_label("File").set_input_files(str(secret_file))
    page.get_by_label("ID").fill("kubeconfig")
    shot(page, "credentials-new-secret-file")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#credential-facts")).to_contain_text("kubeconfig.yaml")
    shot(page, "credentials-credential-file")

    # Certificate
    p12 = tmp_path / "client.p12"
    p12.write_bytes(keystore(KEYSTORE_PASSWORD, cn="ci.example.org"))
    _choose_kind(page, url, "Certificate")
    page.get_by_label("Certificate", exact=True).set_input_files(str(p12))
    page.get_by_label("Password").fill(KEYSTORE_PASSWORD)
    page.get_by_label("ID").fill("client-cert")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#credential-facts")).to_contain_text("CN=ci.example.org")
    shot(page, "credentials-credential-certificate")

    # All five listed.
    page.goto(f"{url}/manage/credentials/store/system/domain/_/")
    rows = page.locator("#credentials tbody tr")
    expect(rows).to_have_count(5)
    for kind in (
        "Username with password",
        "SSH Username with private key",
        "Secret text",
        "Secret file",
        "Certificate",
    ):
        expect(page.locator("#credentials")).to_contain_text(kind)
    _no_secret_in(page, GIT_PASSWORD, API_TOKEN, FILE_BODY.strip(), KEYSTORE_PASSWORD, PASSPHRASE)
    shot(page, "credentials-domain-listed")
    page.goto(f"{url}/manage/credentials/")
    expect(page.locator("#credentials tbody tr")).to_have_count(5)
    shot(page, "credentials-index")

    # Edit a description: the secret stays concealed and unchanged.
    page.goto(f"{url}/manage/credentials/store/system/domain/_/credential/git-login/")
    page.get_by_role("link", name="Update").first.click()
    expect(page.locator("#field-password .concealed")).to_contain_text("Concealed")
    expect(page.locator("#field-password input[type=password]")).to_be_hidden()
    _no_secret_in(page, GIT_PASSWORD)
    shot(page, "credentials-update")
    page.get_by_label("Description").fill("Git over HTTPS, for the release jobs")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#credential-facts")).to_contain_text("for the release jobs")
    credential = Credential.objects.get(credential_id="git-login")
    assert services.get_secret(credential, "password") == GIT_PASSWORD

    # Replace a secret.
    page.goto(f"{url}/manage/credentials/store/system/domain/_/credential/api-token/update")
    page.locator("#field-secret label.secret-replace").click()
    expect(page.locator("#field-secret input[type=password]")).to_be_visible()
    page.locator("#field-secret input[type=password]").fill("api-Token-Rotated-1")
    shot(page, "credentials-update-replace")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Credentials updated")).to_be_visible()
    assert (
        services.get_secret(Credential.objects.get(credential_id="api-token"), "secret")
        == "api-Token-Rotated-1"
    )

    # A domain with specifications, then move a credential into it.
    page.goto(f"{url}/manage/credentials/store/system/")
    page.get_by_role("link", name="Add domain").first.click()
    page.get_by_label("Domain Name").fill("Build farm")
    page.get_by_label("Description").fill("The SSH build agents")
    page.locator("#id_hostname_includes").fill("*.farm.example.com")
    page.locator("#id_schemes").fill("ssh")
    shot(page, "credentials-new-domain")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Build farm")).to_be_visible()
    expect(page.locator("#specifications")).to_contain_text("*.farm.example.com")
    shot(page, "credentials-domain-named")

    page.goto(f"{url}/manage/credentials/store/system/domain/_/credential/agent-key/")
    page.get_by_role("link", name="Move").first.click()
    page.get_by_label("Destination").select_option("Build farm")
    shot(page, "credentials-move")
    page.get_by_role("button", name="Move").click()
    expect(page).to_have_url(re.compile(r"/domain/Build%20farm/credential/agent-key/$"))
    assert Credential.objects.get(credential_id="agent-key").domain.name == "Build farm"

    # Delete asks first.
    page.goto(f"{url}/manage/credentials/store/system/domain/_/credential/kubeconfig/")
    page.get_by_role("link", name="Delete").first.click()
    expect(page.get_by_text("Are you sure about deleting")).to_be_visible()
    shot(page, "credentials-delete")
    page.get_by_role("button", name="Yes").click()
    expect(page.locator("#credentials tbody tr")).to_have_count(3)
    assert not Credential.objects.filter(credential_id="kubeconfig").exists()

    page.goto(f"{url}/manage/credentials/store/system/domain/Build%20farm/delete")
    expect(page.get_by_text("This will delete all credentials in this domain.")).to_be_visible()
    shot(page, "credentials-domain-delete")


def test_viewer_sees_but_cannot_manage(browser_page, console_server, login, shot):
    page, url = browser_page, console_server.url
    credential = make_credential("string", "api-token", description="Deploy token")
    make_persona("victor", "Viewers")
    login(page, "victor", PASSWORD)

    page.goto(f"{url}/manage/credentials/store/system/domain/_/")
    expect(page.locator("#credentials")).to_contain_text("api-token")
    expect(page.get_by_role("link", name="Add Credentials")).to_have_count(0)
    page.get_by_role("link", name="api-token").click()
    expect(page.locator("#credential-facts")).to_contain_text("Secret text")
    expect(page.get_by_role("link", name="Update")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    _no_secret_in(page, services.get_secret(credential, "secret"))
    shot(page, "credentials-viewer-credential")

    response = page.goto(
        f"{url}/manage/credentials/store/system/domain/_/credential/api-token/update"
    )
    assert response.status == 403
    shot(page, "credentials-viewer-denied")
    response = page.goto(
        f"{url}/manage/credentials/store/system/domain/_/newCredentials?kind=string"
    )
    assert response.status == 403
