"""Every kind's form: valid input, parsing on save, and each bad input as a field error."""

from __future__ import annotations

import uuid

import paramiko
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from credentials import services
from credentials.forms import KEEP, MAX_SECRET_FILE_BYTES
from credentials.kinds import all_kinds, get_kind
from credentials.kinds.ssh import parse_private_key
from credentials.tests.factories import (
    PASSPHRASE,
    PASSWORD,
    keystore,
    make_credential,
    ssh_key_text,
    ssh_keygen,
)

pytestmark = pytest.mark.django_db


def form_for(kind: str, data: dict, files: dict | None = None, instance=None):
    stored = services.secret_values(instance) if instance else None
    return get_kind(kind).form_class(data, files, instance=instance, stored_secrets=stored)


def common(**extra) -> dict:
    return {"scope": "GLOBAL", "credential_id": "", "description": "", **extra}


def test_registry_has_jenkins_kinds_in_order():
    assert [k.display_name for k in all_kinds()] == [
        "Username with password",
        "SSH Username with private key",
        "Secret text",
        "Secret file",
        "Certificate",
    ]
    for kind in all_kinds():
        assert set(kind.form_class.secret_field_names) == set(kind.secret_fields)
    assert get_kind("gone").display_name == "Unknown kind (gone)"


# --- common fields: ID, scope, description -------------------------------------------------------


def test_blank_id_becomes_a_uuid():
    form = form_for("string", common(secret="x"))
    assert form.is_valid(), form.errors
    assert uuid.UUID(form.cleaned_data["credential_id"])


@pytest.mark.parametrize("bad", ["has space", "slash/inside", "ünïcode", "..", "semi;colon"])
def test_id_with_unacceptable_characters(bad):
    form = form_for("string", common(credential_id=bad, secret="x"))
    assert not form.is_valid()
    assert form.errors["credential_id"] == ["Unacceptable characters"]


def test_duplicate_id_in_the_store():
    make_credential("string", "deploy-token")
    form = form_for("string", common(credential_id="deploy-token", secret="x"))
    assert not form.is_valid()
    assert form.errors["credential_id"] == ["This ID is already in use"]


def test_id_is_read_only_after_creation():
    credential = make_credential("string", "fixed-id")
    form = form_for("string", common(credential_id="changed", description="d"), instance=credential)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["credential_id"] == "fixed-id"
    assert "disabled" in str(form["credential_id"])


def test_scope_must_be_global_or_system():
    form = form_for("string", common(scope="USER", secret="x"))
    assert not form.is_valid() and "scope" in form.errors


# --- Username with password ---------------------------------------------------------------------


def test_username_password_valid():
    form = form_for("usernamePassword", common(username="deploy", password=PASSWORD))
    assert form.is_valid(), form.errors
    data = form.to_input()
    assert (data.username, data.username_secret, data.secrets) == (
        "deploy",
        False,
        {"password": PASSWORD},
    )


def test_username_treated_as_secret_goes_to_the_secrets():
    form = form_for(
        "usernamePassword", common(username="svc-hidden", username_secret="on", password=PASSWORD)
    )
    assert form.is_valid(), form.errors
    data = form.to_input()
    assert data.username == "" and data.username_secret
    assert data.secrets == {"username": "svc-hidden", "password": PASSWORD}


def test_blank_username_and_password_are_field_errors():
    form = form_for("usernamePassword", common(username="  ", password=""))
    assert not form.is_valid()
    assert form.errors["username"] == [
        "Blank username; did you mean to use secret text credentials instead?"
    ]
    assert form.errors["password"] == ["This field is required."]


def test_untouched_password_keeps_the_stored_one_and_replace_changes_it():
    credential = make_credential("usernamePassword", "git")
    form = form_for(
        "usernamePassword", common(username="deploy", description="new"), instance=credential
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["password"] is KEEP
    assert form.to_input().secrets["password"] == PASSWORD
    form = form_for(
        "usernamePassword",
        common(username="deploy", password="n3w-Pass", password__replace="on"),
        instance=credential,
    )
    assert form.is_valid(), form.errors
    assert form.to_input().secrets["password"] == "n3w-Pass"


def test_replace_with_nothing_is_required():
    credential = make_credential("usernamePassword", "git")
    form = form_for(
        "usernamePassword",
        common(username="deploy", password="", password__replace="on"),
        instance=credential,
    )
    assert not form.is_valid()
    assert form.errors["password"] == ["This field is required."]


def test_stored_secrets_never_render():
    credential = make_credential(
        "usernamePassword", "git", username="hidden-user", username_secret=True
    )
    form = form_for("usernamePassword", {}, instance=credential)
    html = form.as_div()
    assert "Concealed" in html and "Replace" in html
    assert PASSWORD not in html and "hidden-user" not in html
    assert credential.encrypted_secrets not in html
    assert PASSWORD not in str(form.initial) and "hidden-user" not in str(form.initial)
    # Posted back with an error, a typed secret is not echoed either.
    form = form_for("usernamePassword", common(username="", password="typed-Secret-99"))
    assert not form.is_valid()
    assert "typed-Secret-99" not in form.as_div()
    assert form.secret_posted()


def test_secret_username_kept_when_untouched():
    credential = make_credential(
        "usernamePassword", "git", username="hidden-user", username_secret=True
    )
    form = form_for(
        "usernamePassword", common(username_secret="on", description="x"), instance=credential
    )
    assert form.is_valid(), form.errors
    assert form.to_input().secrets["username"] == "hidden-user"
    # Unticking "Treat username as secret" moves the kept username back to a plain column.
    form = form_for("usernamePassword", common(description="x"), instance=credential)
    assert form.is_valid(), form.errors
    data = form.to_input()
    assert data.username == "hidden-user" and "username" not in data.secrets


# --- SSH Username with private key --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_ssh_keys_from_ssh_keygen(kind, encrypted):
    passphrase = PASSPHRASE if encrypted else ""
    private, public = ssh_keygen(kind, passphrase)
    form = form_for(
        "sshUserPrivateKey", common(username="agent", private_key=private, passphrase=passphrase)
    )
    assert form.is_valid(), form.errors
    details = form.to_input().details
    assert details["public_key"] == public
    assert details["fingerprint"].startswith("SHA256:")
    assert details["encrypted"] is encrypted
    assert details["key_format"] == "OpenSSH"


@pytest.mark.parametrize(
    ("kind", "fmt", "label"),
    [
        ("rsa", "pem", "PEM (PKCS#1)"),
        ("ecdsa", "pem", "PEM (SEC 1)"),
        ("rsa", "pkcs8", "PEM (PKCS#8)"),
        ("ed25519", "pkcs8", "PEM (PKCS#8)"),
        ("ecdsa", "openssh", "OpenSSH"),
    ],
)
@pytest.mark.parametrize("passphrase", [None, PASSPHRASE])
def test_ssh_pem_formats_plain_and_encrypted(kind, fmt, label, passphrase):
    text = ssh_key_text(kind, fmt, passphrase)
    parsed = parse_private_key(text, passphrase or "")
    assert parsed.key_format == label
    assert isinstance(parsed.pkey, paramiko.PKey)
    assert parsed.encrypted is bool(passphrase)


def test_ssh_keygen_pem_encrypted_rsa():
    private, public = ssh_keygen("rsa", PASSPHRASE, fmt="PEM")
    parsed = parse_private_key(private, PASSPHRASE)
    assert parsed.public_key == public and parsed.key_format == "PEM (PKCS#1)"


def test_fingerprint_matches_ssh_keygen(tmp_path):
    import subprocess

    private, public = ssh_keygen("ed25519")
    (tmp_path / "k.pub").write_text(public + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert parse_private_key(private).fingerprint == out.split()[1]


def test_windows_line_endings_and_surrounding_space_are_fine():
    private, public = ssh_keygen("ed25519")
    text = "\r\n  " + private.replace("\n", "\r\n") + "  \r\n"
    assert parse_private_key(text).public_key == public


def ssh_errors(private_key: str, passphrase: str = "") -> dict:
    form = form_for(
        "sshUserPrivateKey",
        common(username="agent", private_key=private_key, passphrase=passphrase),
    )
    assert not form.is_valid()
    return form.errors


def test_wrong_passphrase_is_an_error_on_the_passphrase():
    private, _ = ssh_keygen("ed25519", PASSPHRASE)
    errors = ssh_errors(private, "not the passphrase")
    assert errors["passphrase"] == ["Wrong passphrase: the private key could not be decrypted."]
    assert "private_key" not in errors


@pytest.mark.parametrize("fmt", ["openssh", "pem", "pkcs8"])
def test_wrong_passphrase_in_every_format(fmt):
    errors = ssh_errors(ssh_key_text("rsa", fmt, PASSPHRASE), "wrong")
    assert errors["passphrase"] == ["Wrong passphrase: the private key could not be decrypted."]


def test_encrypted_key_without_passphrase():
    private, _ = ssh_keygen("ecdsa", PASSPHRASE)
    assert ssh_errors(private)["passphrase"] == [
        "This private key is encrypted: enter its passphrase."
    ]


def test_truncated_key_is_an_error_on_the_key():
    private, _ = ssh_keygen("rsa")
    errors = ssh_errors(private[: len(private) // 2])
    assert errors["private_key"] == [
        "The private key is truncated: its last line (-----END OPENSSH PRIVATE KEY-----) is missing."
    ]


def test_key_with_lines_missing_in_the_middle_is_damaged():
    private, _ = ssh_keygen("rsa")
    lines = private.splitlines()
    damaged = "\n".join(lines[:3] + lines[8:])
    assert ssh_errors(damaged)["private_key"] == [
        "The private key is damaged or truncated: it could not be read."
    ]


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test", "This is a public key."),
        ("PuTTY-User-Key-File-3: ssh-ed25519\n", "PuTTY keys (.ppk) are not supported."),
        ("hello world", "This is not a private key"),
        (
            "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n",
            "DSA keys are not supported",
        ),
    ],
)
def test_not_a_usable_private_key(text, start):
    assert ssh_errors(text)["private_key"][0].startswith(start)


def test_ssh_key_is_required_and_kept_when_untouched():
    assert ssh_errors("")["private_key"] == ["This field is required."]
    credential = make_credential("sshUserPrivateKey", "agent-key")
    form = form_for(
        "sshUserPrivateKey", common(username="deploy", description="edited"), instance=credential
    )
    assert form.is_valid(), form.errors
    data = form.to_input()
    assert data.details["fingerprint"] == credential.details["fingerprint"]
    assert data.secrets["passphrase"] == PASSPHRASE


def test_changing_only_the_passphrase_revalidates_the_stored_key():
    credential = make_credential("sshUserPrivateKey", "agent-key")
    form = form_for(
        "sshUserPrivateKey",
        common(username="deploy", passphrase="wrong", passphrase__replace="on"),
        instance=credential,
    )
    assert not form.is_valid()
    assert form.errors["passphrase"] == [
        "Wrong passphrase: the private key could not be decrypted."
    ]


# --- Secret text --------------------------------------------------------------------------------


def test_secret_text_required_and_valid():
    form = form_for("string", common(secret=""))
    assert not form.is_valid() and form.errors["secret"] == ["This field is required."]
    form = form_for("string", common(secret="  token with spaces  "))
    assert form.is_valid()
    assert form.to_input().secrets == {
        "secret": "  token with spaces  "
    }  # secrets are not stripped


# --- Secret file --------------------------------------------------------------------------------


def test_secret_file_keeps_the_file_name_only():
    upload = SimpleUploadedFile("C:\\Users\\me\\kube config.yaml", b"content")
    form = form_for("file", common(), {"file": upload})
    assert form.is_valid(), form.errors
    data = form.to_input()
    assert data.details == {"filename": "kube config.yaml", "size": 7}
    assert data.secrets == {"file": b"content"}


def test_secret_file_size_limit():
    upload = SimpleUploadedFile("big.bin", b"x" * (MAX_SECRET_FILE_BYTES + 1))
    form = form_for("file", common(), {"file": upload})
    assert not form.is_valid()
    assert form.errors["file"] == [
        "The file is too large: 1,048,577 bytes. The limit is 1.0\xa0MB (1,048,576 bytes)."
    ]


def test_secret_file_required_then_kept():
    form = form_for("file", common(), {})
    assert not form.is_valid() and form.errors["file"] == ["This field is required."]
    credential = make_credential("file", "kube")
    form = form_for("file", common(description="d"), {}, instance=credential)
    assert form.is_valid(), form.errors
    assert form.to_input().details["filename"] == "kubeconfig"
    assert "kubeconfig" in form["file"].as_widget()  # the Replace block names the current file


# --- Certificate --------------------------------------------------------------------------------


def cert_form(data: bytes, password: str, instance=None):
    files = {"keystore": SimpleUploadedFile("client.p12", data)} if data else {}
    return form_for("certificate", common(password=password), files, instance=instance)


def test_certificate_valid_with_subject_and_expiry():
    form = cert_form(keystore("pw-123", cn="ci.example.org"), "pw-123")
    assert form.is_valid(), form.errors
    details = form.to_input().details
    assert details["common_name"] == "ci.example.org"
    assert details["subject"] == "CN=ci.example.org"
    assert details["not_after"] > details["not_before"]


def test_certificate_without_password():
    assert cert_form(keystore(None), "").is_valid()


def test_certificate_wrong_or_missing_password():
    form = cert_form(keystore("pw-123"), "nope")
    assert not form.is_valid()
    assert form.errors["password"] == ["Wrong password: the keystore could not be opened with it."]
    form = cert_form(keystore("pw-123"), "")
    assert form.errors["password"] == ["This keystore is protected by a password: enter it."]


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"not a keystore"])
def test_corrupt_keystore(damage):
    form = cert_form(damage(keystore("pw")), "pw")
    assert not form.is_valid()
    assert form.errors["keystore"] == ["This file is not a PKCS#12 keystore, or it is damaged."]


def test_keystore_without_a_key():
    form = cert_form(keystore("pw", with_key=False), "pw")
    assert not form.is_valid()
    assert "holds no private key" in form.errors["keystore"][0]


def test_certificate_password_change_is_checked_against_the_stored_keystore():
    credential = make_credential("certificate", "client-cert")
    form = form_for(
        "certificate", common(password="wrong", password__replace="on"), {}, instance=credential
    )
    assert not form.is_valid()
    assert form.errors["password"] == ["Wrong password: the keystore could not be opened with it."]
    form = form_for("certificate", common(description="kept"), {}, instance=credential)
    assert form.is_valid(), form.errors


def test_expired_certificate_is_flagged():
    credential = make_credential("certificate", "old", keystore=keystore("keystore-pass", days=-1))
    assert credential.kind_class.warnings(credential)[0].startswith("This certificate expired on")
