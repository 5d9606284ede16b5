"""Services: saving, the decrypt accessor, usage records and which credentials are offered."""

from __future__ import annotations

import logging

import paramiko
import pytest
from django.db import connection

from credentials import crypto, services
from credentials.forms import CredentialInput
from credentials.models import GLOBAL_DOMAIN, Credential, CredentialUsage, Scope
from credentials.tests.factories import (
    API_TOKEN,
    FILE_CONTENT,
    PASSPHRASE,
    PASSWORD,
    make_credential,
    make_domain,
)

pytestmark = pytest.mark.django_db

ALL_KINDS = ["usernamePassword", "sshUserPrivateKey", "string", "file", "certificate"]


def raw_row(credential) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM credentials_credential WHERE id = %s", [credential.pk])
        names = [c[0] for c in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_is_stored_as_ciphertext_only(kind):
    credential = make_credential(kind, f"c-{kind}", username="hidden-user", username_secret=True)
    secrets = services.secret_values(credential)
    row = raw_row(credential)
    assert crypto.is_ciphertext(row["encrypted_secrets"])
    flat = " ".join(str(v) for v in row.values())
    for value in secrets.values():
        text = value.decode(errors="ignore") if isinstance(value, bytes) else value
        if len(text) >= 6:
            assert text not in flat
    assert "hidden-user" not in flat


def test_secret_values_round_trip_with_types():
    assert services.secret_values(make_credential("string", "t")) == {"secret": API_TOKEN}
    assert services.secret_values(make_credential("file", "f")) == {"file": FILE_CONTENT}
    cert = services.secret_values(make_credential("certificate", "c"))
    assert isinstance(cert["keystore"], bytes) and cert["password"] == "keystore-pass"


def test_get_secret_and_username_of():
    plain = make_credential("usernamePassword", "plain", username="deploy")
    hidden = make_credential("usernamePassword", "hidden", username="svc-x", username_secret=True)
    assert services.get_secret(plain, "password") == PASSWORD
    assert services.username_of(plain) == "deploy"
    assert services.username_of(hidden) == "svc-x"
    assert hidden.username == ""
    with pytest.raises(KeyError):
        services.get_secret(plain, "private_key")


def test_load_private_key_for_launchers():
    credential = make_credential("sshUserPrivateKey", "agent")
    pkey = services.load_private_key(credential)
    assert isinstance(pkey, paramiko.Ed25519Key)
    assert pkey.fingerprint == credential.details["fingerprint"]
    assert services.get_secret(credential, "passphrase") == PASSPHRASE


def test_decrypt_failure_is_a_clear_exception():
    credential = make_credential("string", "t")
    Credential.objects.filter(pk=credential.pk).update(
        encrypted_secrets=credential.encrypted_secrets[:-10]
    )
    credential.refresh_from_db()
    with pytest.raises(crypto.DecryptionError):
        services.secret_values(credential)


def test_duplicate_id_raises():
    make_credential("string", "same")
    with pytest.raises(services.DuplicateCredentialId):
        make_credential("string", "same")


def test_update_move_delete(caplog):
    caplog.set_level(logging.INFO, logger="steward.credentials")
    credential = make_credential("string", "t")
    domain = make_domain("Production")
    services.update_credential(
        credential,
        CredentialInput(
            kind="string",
            scope=Scope.SYSTEM,
            credential_id="t",
            description="rotated",
            secrets={"secret": "new-Token-Value-77"},
        ),
    )
    credential.refresh_from_db()
    assert credential.scope == Scope.SYSTEM and credential.description == "rotated"
    assert services.get_secret(credential, "secret") == "new-Token-Value-77"
    services.move_credential(credential, domain)
    assert Credential.objects.get(pk=credential.pk).domain == domain
    services.move_credential(credential, GLOBAL_DOMAIN)
    assert Credential.objects.get(pk=credential.pk).domain is None
    services.delete_credential(credential)
    assert not Credential.objects.filter(pk=credential.pk).exists()
    assert "new-Token-Value-77" not in caplog.text and API_TOKEN not in caplog.text
    assert "Credential t updated" in caplog.text


def test_delete_domain_deletes_its_credentials():
    domain = make_domain("Staging")
    make_credential("string", "a", domain=domain)
    make_credential("string", "b", domain=domain)
    kept = make_credential("string", "c")
    assert services.delete_domain(domain) == 2
    assert list(Credential.objects.values_list("credential_id", flat=True)) == [kept.credential_id]


def test_get_domain_and_domains_of():
    domain = make_domain("Production")
    assert services.get_domain("system", "_") is GLOBAL_DOMAIN
    assert services.get_domain("system", "Production") == domain
    assert services.domains_of() == [GLOBAL_DOMAIN, domain]


# --- usage --------------------------------------------------------------------------------------


def test_record_usage_is_one_row_per_consumer_with_first_and_last_use():
    credential = make_credential("sshUserPrivateKey", "agent")
    services.record_usage(credential, "node", 7, "build-7", "/computer/build-7/")
    first = CredentialUsage.objects.get()
    services.record_usage(credential.pk, "node", "7", "build-7 (renamed)", "/computer/build-7/")
    services.record_usage(credential, "job", 3, "deploy")
    assert CredentialUsage.objects.count() == 2
    again = CredentialUsage.objects.get(consumer_type="node")
    assert again.first_used_at == first.first_used_at
    assert again.last_used_at >= first.last_used_at
    assert again.name == "build-7 (renamed)"
    assert services.forget_usage("node", 7) == 1
    assert list(CredentialUsage.objects.values_list("consumer_type", flat=True)) == ["job"]


# --- which credentials a consumer may use -----------------------------------------------------


def test_credentials_for_filters_kinds_scope_and_domain_with_reasons():
    farm = make_domain(
        "Build farm",
        [
            {"type": "hostname", "includes": "*.farm.example.com", "excludes": ""},
            {"type": "scheme", "schemes": "ssh"},
        ],
    )
    make_credential("sshUserPrivateKey", "farm-key", domain=farm, scope=Scope.SYSTEM)
    make_credential("sshUserPrivateKey", "global-key")
    make_credential("usernamePassword", "login")
    make_credential("string", "token")
    ssh_kinds = ("sshUserPrivateKey", "usernamePassword")

    choices = services.matching_credentials(
        kinds=ssh_kinds, hostname="b1.farm.example.com", port=22, scheme="ssh"
    )
    assert [c.credential_id for c in choices.offered] == ["farm-key", "global-key", "login"]
    assert choices.reason_for("token") == (
        "It is a Secret text credential; this needs SSH Username with private key or Username with password."
    )

    elsewhere = services.matching_credentials(
        kinds=ssh_kinds, hostname="db.example.org", port=22, scheme="ssh"
    )
    assert not elsewhere.is_offered("farm-key")
    assert elsewhere.reason_for("farm-key") == (
        "Its domain ‘Build farm’ does not apply here: db.example.org is not in its Hostname "
        "includes (*.farm.example.com)."
    )

    for_jobs = services.credentials_for(
        services.CredentialRequirement(
            kinds=ssh_kinds,
            hostname="b1.farm.example.com",
            scheme="ssh",
            scopes=services.ITEM_CONTEXT,
        )
    )
    assert "Its scope is System (Steward and nodes only)" in for_jobs.reason_for("farm-key")
    assert for_jobs.is_offered("global-key")


def test_credentials_for_query_count(django_assert_num_queries):
    domain = make_domain("D", [{"type": "scheme", "schemes": "ssh"}])
    for i in range(5):
        make_credential("string", f"t{i}", domain=domain if i % 2 else None)
    with django_assert_num_queries(1):
        services.matching_credentials(scheme="https")
