"""Encryption at rest: tokens, keys, the key file and the start-up check."""

from __future__ import annotations

import base64
import stat

import pytest
from django.db import connection

from credentials import crypto
from credentials.tests.factories import API_TOKEN, make_credential


@pytest.fixture
def key_file(tmp_path, settings):
    """A fresh, empty key location for this test (no key configured yet)."""
    settings.STEWARD_MASTER_KEY = ""
    settings.STEWARD_MASTER_KEY_FILE = tmp_path / "secrets" / "master.key"
    return settings.STEWARD_MASTER_KEY_FILE


def raw_secret_column(credential) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT encrypted_secrets FROM credentials_credential WHERE id = %s", [credential.pk]
        )
        return cursor.fetchone()[0]


def test_round_trip_names_the_key_and_uses_a_fresh_nonce():
    key = crypto.current_key()
    first = crypto.encrypt(b"hunter2", purpose="test")
    second = crypto.encrypt(b"hunter2", purpose="test")
    assert first.startswith(f"steward:v1:{key.key_id}:")
    assert crypto.key_id_of(first) == key.key_id
    assert first != second
    assert b"hunter2" not in base64.urlsafe_b64decode(first.rsplit(":", 1)[1])
    assert crypto.decrypt(first, purpose="test") == b"hunter2"


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[:-6],  # truncated
        lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"),  # altered tag
        lambda t: t.replace("steward:v1:", "steward:v2:"),  # wrong version
        lambda t: "plain text secret",  # not a token at all
    ],
)
def test_a_damaged_token_is_a_clear_error_never_a_partial_value(damage):
    token = crypto.encrypt(b"the whole secret", purpose="test")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(damage(token), purpose="test")


def test_the_purpose_is_bound_into_the_token():
    token = crypto.encrypt(b"for one column", purpose="credentials.Credential.secrets")
    with pytest.raises(crypto.DecryptionError, match="integrity check"):
        crypto.decrypt(token, purpose="nodes.Node.something")


def test_a_token_cannot_be_moved_to_another_key_id(key_file):
    one, two = crypto.generate_key(), crypto.generate_key()
    crypto.write_key_file([one, two])
    token = crypto.encrypt(b"x", purpose="test")
    forged = token.replace(one.key_id, two.key_id)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(forged, purpose="test")


def test_a_token_for_a_key_we_do_not_hold_names_the_key(key_file):
    crypto.create_key_file()
    token = crypto.encrypt(b"x", purpose="test")
    crypto.write_key_file([crypto.generate_key()])
    with pytest.raises(crypto.DecryptionError, match=crypto.key_id_of(token)):
        crypto.decrypt(token, purpose="test")


def test_key_file_is_created_private_and_lists_the_key_id(key_file):
    key = crypto.create_key_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    text = key_file.read_text()
    assert f"{key.key_id} " in text
    assert crypto.load_keys() == [key]
    assert "material" not in repr(key) and repr(key) == f"MasterKey(key_id={key.key_id!r})"


def test_the_first_key_encrypts_and_every_key_decrypts(key_file):
    old, new = crypto.generate_key(), crypto.generate_key()
    crypto.write_key_file([old])
    old_token = crypto.encrypt(b"old", purpose="t")
    crypto.write_key_file([new, old])
    assert crypto.key_id_of(crypto.encrypt(b"new", purpose="t")) == new.key_id
    assert crypto.decrypt(old_token, purpose="t") == b"old"


def test_environment_variable_takes_precedence(key_file, settings):
    crypto.create_key_file()
    env_key = crypto.generate_key()
    settings.STEWARD_MASTER_KEY = base64.urlsafe_b64encode(env_key.material).decode()
    assert crypto.current_key() == env_key
    assert "STEWARD_MASTER_KEY" in crypto.key_source()


def test_the_master_key_is_not_derived_from_secret_key(key_file, settings):
    # No key configured: Django's SECRET_KEY is there, yet nothing can be encrypted.
    with pytest.raises(crypto.MasterKeyError, match="STEWARD_MASTER_KEY"):
        crypto.encrypt(b"x", purpose="t")
    crypto.create_key_file()
    token = crypto.encrypt(b"x", purpose="t")
    settings.SECRET_KEY = "a-completely-different-django-secret-key-0123456789"
    assert crypto.decrypt(token, purpose="t") == b"x"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not-base64-at-all!!\n", "not valid base64"),
        ("c2hvcnQ\n", "must be 32 bytes"),
        ("# only a comment\n", "holds no key"),
    ],
)
def test_a_malformed_key_file_is_a_clear_error(key_file, content, message):
    key_file.parent.mkdir(parents=True)
    key_file.write_text(content)
    with pytest.raises(crypto.MasterKeyError, match=message):
        crypto.load_keys()


def test_a_key_listed_under_the_wrong_id_is_refused(key_file):
    key = crypto.create_key_file()
    key_file.write_text(key_file.read_text().replace(key.key_id, "0" * crypto.KEY_ID_LENGTH))
    with pytest.raises(crypto.MasterKeyError, match="edited or damaged"):
        crypto.load_keys()


# --- the start-up check (console.services.prepare_home calls ensure_master_key) ----------------


@pytest.mark.django_db
def test_fresh_install_creates_the_key_file(key_file):
    assert not key_file.exists()
    crypto.ensure_master_key()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    crypto.ensure_master_key()  # every later start keeps it
    assert key_file.read_text() == first


@pytest.mark.django_db
def test_ciphertext_without_its_key_file_raises_and_creates_nothing(key_file):
    crypto.create_key_file()
    credential = make_credential("string")
    key_file.unlink()
    with pytest.raises(crypto.MasterKeyError) as error:
        crypto.ensure_master_key()
    assert str(key_file) in str(error.value)
    assert "STEWARD_MASTER_KEY" in str(error.value)
    assert "Nothing was changed" in str(error.value)
    assert not key_file.exists()
    assert raw_secret_column(credential).startswith("steward:v1:")


@pytest.mark.django_db
def test_ciphertext_with_a_wrong_key_raises_and_changes_nothing(key_file):
    key = crypto.create_key_file()
    credential = make_credential("string")
    before = raw_secret_column(credential)
    crypto.write_key_file([crypto.generate_key()])
    wrong_file = key_file.read_text()
    with pytest.raises(crypto.MasterKeyError, match=key.key_id):
        crypto.ensure_master_key()
    assert key_file.read_text() == wrong_file
    assert raw_secret_column(credential) == before


@pytest.mark.django_db
def test_a_damaged_key_in_use_fails_at_start(key_file, settings):
    crypto.create_key_file()
    credential = make_credential("string")
    token = raw_secret_column(credential)
    # The same id but altered ciphertext: the start-up check decrypts one row per key.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE credentials_credential SET encrypted_secrets = %s WHERE id = %s",
            [token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8), credential.pk],
        )
    with pytest.raises(crypto.MasterKeyError, match="integrity check"):
        crypto.ensure_master_key()


@pytest.mark.django_db
def test_the_right_key_passes_the_start_up_check(key_file):
    crypto.create_key_file()
    make_credential("string")
    crypto.ensure_master_key()
    assert crypto.key_ids_in_use() == {crypto.current_key().key_id}


@pytest.mark.django_db
def test_raw_database_value_is_ciphertext():
    credential = make_credential("string", secret=API_TOKEN)
    raw = raw_secret_column(credential)
    assert crypto.is_ciphertext(raw)
    assert API_TOKEN not in raw
    assert base64.b64encode(API_TOKEN.encode()).decode() not in raw
