"""``manage.py rotate_master_key``: re-encrypt everything, survive an interruption, retire keys."""

from __future__ import annotations

import base64
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from credentials import crypto, services
from credentials.models import Credential
from credentials.tests.factories import make_credential

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_file(tmp_path, settings):
    settings.STEWARD_MASTER_KEY = ""
    settings.STEWARD_MASTER_KEY_FILE = tmp_path / "secrets" / "master.key"
    crypto.create_key_file()
    return settings.STEWARD_MASTER_KEY_FILE


@pytest.fixture
def credentials(key_file):
    return [
        make_credential("usernamePassword", "git", username="hidden", username_secret=True),
        make_credential("sshUserPrivateKey", "agent"),
        make_credential("string", "token"),
        make_credential("file", "kube"),
        make_credential("certificate", "cert"),
    ]


def snapshot() -> dict[str, dict]:
    return {c.credential_id: services.secret_values(c) for c in Credential.objects.all()}


def key_ids_of_rows() -> set[str]:
    return {
        crypto.key_id_of(t) for t in Credential.objects.values_list("encrypted_secrets", flat=True)
    }


def test_rotation_re_encrypts_everything_and_retires_the_old_key(key_file, credentials):
    old = crypto.current_key()
    before = snapshot()
    out = StringIO()
    call_command("rotate_master_key", stdout=out)
    new = crypto.current_key()
    assert new != old
    assert crypto.load_keys() == [new]
    assert key_ids_of_rows() == {new.key_id}
    assert snapshot() == before
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    text = out.getvalue()
    assert f"Re-encrypted 5 secrets with master key {new.key_id}." in text
    assert f"Retired master key {old.key_id}" in text
    for secrets in before.values():  # the command prints ids and counts, never a secret
        for value in secrets.values():
            if isinstance(value, str) and len(value) > 4:
                assert value not in text
    crypto.ensure_master_key()  # the next start is happy


def test_interrupted_rotation_keeps_working_and_resumes(key_file, credentials):
    old = crypto.current_key()
    before = snapshot()

    def stop_after_two(done: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crypto.rotate_master_key(on_row=stop_after_two)
    keys = crypto.load_keys()
    assert len(keys) == 2 and keys[1] == old
    new = keys[0]
    assert key_ids_of_rows() == {old.key_id, new.key_id}
    # Meanwhile the console works: everything decrypts, new secrets use the new key.
    assert snapshot() == before
    crypto.ensure_master_key()
    extra = make_credential("string", "made-meanwhile")
    assert crypto.key_id_of(extra.encrypted_secrets) == new.key_id

    report = crypto.rotate_master_key()
    assert report.resumed and report.key_id == new.key_id
    assert report.reencrypted == 3
    assert report.retired == [old.key_id]
    assert crypto.load_keys() == [new]
    assert key_ids_of_rows() == {new.key_id}
    assert {k: v for k, v in snapshot().items() if k != "made-meanwhile"} == before


def test_rotation_with_nothing_stored(key_file):
    old = crypto.current_key()
    report = crypto.rotate_master_key()
    assert report.reencrypted == 0 and report.retired == [old.key_id]
    assert crypto.load_keys() == [crypto.current_key()] != [old]


def test_rotation_with_the_environment_variable(settings, credentials):
    old = crypto.current_key()
    encoded = base64.urlsafe_b64encode(old.material).decode()
    settings.STEWARD_MASTER_KEY = encoded
    with pytest.raises(CommandError, match="holds one key"):
        call_command("rotate_master_key", stdout=StringIO())
    new = crypto.generate_key()
    settings.STEWARD_MASTER_KEY = base64.urlsafe_b64encode(new.material).decode() + "," + encoded
    out = StringIO()
    call_command("rotate_master_key", stdout=out)
    assert key_ids_of_rows() == {new.key_id}
    assert "remove it from STEWARD_MASTER_KEY" in out.getvalue()
    settings.STEWARD_MASTER_KEY = base64.urlsafe_b64encode(new.material).decode()
    crypto.ensure_master_key()


def test_rotation_without_any_key_is_a_clear_error(settings, tmp_path):
    settings.STEWARD_MASTER_KEY = ""
    settings.STEWARD_MASTER_KEY_FILE = tmp_path / "none.key"
    with pytest.raises(CommandError, match="No credentials master key"):
        call_command("rotate_master_key", stdout=StringIO())
