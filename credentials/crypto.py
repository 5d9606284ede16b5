"""Encryption at rest: the one module that encrypts and decrypts secrets, with the master key.

Ciphertext is ``steward:v1:<key id>:<base64url(nonce + AES-256-GCM output)>``; the header is
authenticated too, so a token cannot be moved to another key id or purpose unnoticed. The
master key (never Django's SECRET_KEY) comes from ``STEWARD_MASTER_KEY`` or the key file
(``STEWARD_HOME/secrets/master.key``, mode 0600). The file may hold several keys while a
rotation is in progress: the first encrypts, all of them decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Substr
from django.views.decorators.debug import sensitive_variables

from console.home import write_private_file

logger = logging.getLogger("steward.credentials.crypto")

TOKEN_PREFIX = "steward:v1:"
KEY_ID_LENGTH = 12
KEY_BYTES = 32
NONCE_BYTES = 12
ENV_VARIABLE = "STEWARD_MASTER_KEY"
FILE_VARIABLE = "STEWARD_MASTER_KEY_FILE"

# Every database column that holds ciphertext: (app label, model, field, purpose). Rotation
# and the start-up check walk these; the purpose is bound into each token as associated data.
ENCRYPTED_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("credentials", "Credential", "encrypted_secrets", "credentials.Credential.secrets"),
    ("builds", "Job", "encrypted_secrets", "builds.Job.secrets"),
    ("builds", "QueueItem", "encrypted_parameters", "builds.QueueItem.parameters"),
    ("builds", "Build", "encrypted_parameters", "builds.Build.parameters"),
)


class MasterKeyError(Exception):
    """The master key is missing, unreadable, malformed or not the one the data needs."""


class DecryptionError(Exception):
    """A token could not be decrypted: wrong key, damaged or not a Steward ciphertext."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    material: bytes = field(repr=False)

    def __repr__(self) -> str:  # never the material, not even in a traceback
        return f"MasterKey(key_id={self.key_id!r})"


def key_id_for(material: bytes) -> str:
    """A short public name derived from the key: a wrong key can never claim a right id."""
    return hashlib.sha256(b"steward-master-key-id\0" + material).hexdigest()[:KEY_ID_LENGTH]


def generate_key() -> MasterKey:
    material = secrets.token_bytes(KEY_BYTES)
    return MasterKey(key_id_for(material), material)


def key_file_path() -> Path:
    return Path(settings.STEWARD_MASTER_KEY_FILE)


def key_source() -> str:
    """Where the keys come from, for messages (never the key itself)."""
    if settings.STEWARD_MASTER_KEY:
        return f"the {ENV_VARIABLE} environment variable"
    return f"the key file {key_file_path()} ({FILE_VARIABLE})"


@sensitive_variables()
def _decode_material(text: str, where: str) -> bytes:
    try:
        padded = text.encode("ascii") + b"=" * (-len(text) % 4)
        material = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MasterKeyError(f"{where}: a key is not valid base64.") from None
    if len(material) != KEY_BYTES:
        raise MasterKeyError(f"{where}: a key must be {KEY_BYTES} bytes (base64url encoded).")
    return material


@sensitive_variables()
def parse_keys(text: str, where: str) -> list[MasterKey]:
    """Keys from a key file or the variable: ``[<key id> ]<base64url key>`` per line or comma
    item; ``#`` starts a comment. The first key is the one that encrypts."""
    keys: list[MasterKey] = []
    for raw_line in text.replace(",", "\n").splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise MasterKeyError(f"{where}: a line has more than a key id and a key.")
        material = _decode_material(parts[-1], where)
        key = MasterKey(key_id_for(material), material)
        if len(parts) == 2 and parts[0] != key.key_id:
            raise MasterKeyError(
                f"{where}: the key listed as {parts[0]} is not that key (its id is "
                f"{key.key_id}); the file was edited or damaged."
            )
        if key.key_id not in {k.key_id for k in keys}:
            keys.append(key)
    return keys


def format_key_file(keys: Iterable[MasterKey]) -> str:
    lines = [
        "# Steward credentials master key. Keep it secret and back it up with the database:",
        "# without it the stored credentials cannot be decrypted. The first key encrypts; any",
        "# others are still being rotated out (manage.py rotate_master_key).",
    ]
    lines += [
        f"{k.key_id} {base64.urlsafe_b64encode(k.material).decode('ascii').rstrip('=')}"
        for k in keys
    ]
    return "\n".join(lines) + "\n"


def write_key_file(keys: list[MasterKey]) -> None:
    if not keys:
        raise ValueError("refusing to write an empty master key file")
    write_private_file(key_file_path(), format_key_file(keys))


_cache_lock = threading.Lock()
_cache: dict[str, object] = {"signature": None, "keys": []}


def _signature() -> tuple:
    if settings.STEWARD_MASTER_KEY:
        return ("env", hashlib.sha256(settings.STEWARD_MASTER_KEY.encode()).hexdigest())
    path = key_file_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return ("file", str(path), None)
    except OSError as exc:
        raise MasterKeyError(f"Cannot read the master key file {path}: {exc.strerror}.") from None
    return ("file", str(path), st.st_ino, st.st_mtime_ns, st.st_size)


def load_keys() -> list[MasterKey]:
    """The configured keys, first = current; ``[]`` when none is configured.

    Re-read whenever the variable or the file changes, so every process follows a rotation.
    """
    signature = _signature()
    with _cache_lock:
        if _cache["signature"] == signature:
            return list(_cache["keys"])  # type: ignore[arg-type]
    if settings.STEWARD_MASTER_KEY:
        keys = parse_keys(settings.STEWARD_MASTER_KEY, ENV_VARIABLE)
        if not keys:
            raise MasterKeyError(f"{ENV_VARIABLE} is set but holds no key.")
    elif signature[2] is None:
        keys = []
    else:
        path = key_file_path()
        try:
            text = path.read_text()
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            raise MasterKeyError(
                f"Cannot read the master key file {path}: {exc.strerror}."
            ) from None
        keys = parse_keys(text, str(path))
        if not keys:
            raise MasterKeyError(f"The master key file {path} holds no key.")
        if mode & 0o077:
            logger.warning(
                "The master key file %s is readable by others (mode %o); chmod 600 it.", path, mode
            )
    with _cache_lock:
        _cache["signature"] = signature
        _cache["keys"] = keys
    return list(keys)


def current_key() -> MasterKey:
    keys = load_keys()
    if not keys:
        raise MasterKeyError(
            f"No credentials master key: neither {ENV_VARIABLE} nor the key file "
            f"{key_file_path()} ({FILE_VARIABLE}) exists. Start Steward once (it creates the "
            "file) or run `manage.py prepare_home`."
        )
    return keys[0]


def _aad(key_id: str, purpose: str) -> bytes:
    return f"{TOKEN_PREFIX}{key_id}:{purpose}".encode()


@sensitive_variables()
def _encrypt_with(key: MasterKey, plaintext: bytes, purpose: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key.material).encrypt(nonce, plaintext, _aad(key.key_id, purpose))
    body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
    return f"{TOKEN_PREFIX}{key.key_id}:{body}"


@sensitive_variables()
def encrypt(plaintext: bytes, *, purpose: str) -> str:
    """Encrypt with the current master key; ``purpose`` names the column (associated data)."""
    return _encrypt_with(current_key(), plaintext, purpose)


def key_id_of(token: str) -> str:
    """The id of the key a token was made with (raises DecryptionError if not a token)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise DecryptionError("not a Steward ciphertext")
    key_id = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + KEY_ID_LENGTH]
    if len(key_id) != KEY_ID_LENGTH or token[len(TOKEN_PREFIX) + KEY_ID_LENGTH :][:1] != ":":
        raise DecryptionError("not a Steward ciphertext")
    return key_id


def is_ciphertext(value: object) -> bool:
    try:
        key_id_of(value)  # type: ignore[arg-type]
    except DecryptionError:
        return False
    return True


@sensitive_variables()
def decrypt(token: str, *, purpose: str) -> bytes:
    """Decrypt a token made by :func:`encrypt` for the same purpose: all of it, or an error."""
    key_id = key_id_of(token)
    key = next((k for k in load_keys() if k.key_id == key_id), None)
    if key is None:
        raise DecryptionError(
            f"This secret was encrypted with master key {key_id}, which {key_source()} does "
            "not hold. Restore the master key that was in use."
        )
    try:
        raw = base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) + KEY_ID_LENGTH + 1 :])
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        return AESGCM(key.material).decrypt(nonce, sealed, _aad(key_id, purpose))
    except (InvalidTag, binascii.Error, ValueError):
        raise DecryptionError(
            f"A secret encrypted with master key {key_id} failed its integrity check: it was "
            "damaged or altered."
        ) from None


# --- the database side: which keys the stored data needs, start-up check, rotation --------------


def _columns():
    from django.apps import apps

    for app_label, model_name, column, purpose in ENCRYPTED_COLUMNS:
        yield apps.get_model(app_label, model_name), column, purpose


def key_ids_in_use() -> set[str]:
    """The ids of the keys the stored ciphertext was made with (reads prefixes only)."""
    tables = set(connection.introspection.table_names())
    used: set[str] = set()
    width = len(TOKEN_PREFIX) + KEY_ID_LENGTH
    for model, column, _purpose in _columns():
        if model._meta.db_table not in tables:
            continue
        prefixes = (
            model.objects.exclude(**{column: ""})
            .annotate(_token_head=Substr(column, 1, width))
            .values_list("_token_head", flat=True)
            .distinct()
        )
        used.update(p[len(TOKEN_PREFIX) :] for p in prefixes if p.startswith(TOKEN_PREFIX))
    return used


def _check_keys_decrypt(keys: list[MasterKey], used: set[str]) -> None:
    held = {k.key_id for k in keys}
    missing = sorted(used - held)
    if missing:
        raise MasterKeyError(
            f"The credentials in the database were encrypted with master key "
            f"{', '.join(missing)}, which {key_source()} does not hold. Restore the key file "
            f"({FILE_VARIABLE}, default STEWARD_HOME/secrets/master.key) or set {ENV_VARIABLE} "
            "to the key in use. Nothing was changed."
        )
    # One real decryption per key in use: a damaged key fails here, at start, not mid-build.
    for model, column, purpose in _columns():
        for key_id in used:
            token = (
                model.objects.filter(**{f"{column}__startswith": f"{TOKEN_PREFIX}{key_id}:"})
                .values_list(column, flat=True)
                .first()
            )
            if token:
                try:
                    decrypt(token, purpose=purpose)
                except DecryptionError as exc:
                    raise MasterKeyError(f"{exc} Nothing was changed.") from None


def ensure_master_key() -> None:
    """At every start: create the key file on a fresh install; otherwise check the key fits.

    The file is created only when no key is configured *and* the database holds no
    ciphertext; if ciphertext exists without its key, this raises and changes nothing.
    """
    keys = load_keys()
    used = key_ids_in_use()
    if keys:
        _check_keys_decrypt(keys, used)
        return
    if used:
        raise MasterKeyError(
            f"The database holds encrypted credentials but no master key was found: neither "
            f"{ENV_VARIABLE} nor the key file {key_file_path()} ({FILE_VARIABLE}) exists. "
            "Restore the key file from your backup. Nothing was changed."
        )
    create_key_file()


def create_key_file() -> MasterKey:
    """Write a new key file holding one new key (fresh installs and test runs only)."""
    key = generate_key()
    write_key_file([key])
    logger.info("Created the credentials master key %s in %s", key.key_id, key_file_path())
    return key


@dataclass
class RotationReport:
    key_id: str
    reencrypted: int = 0
    resumed: bool = False
    retired: list[str] = field(default_factory=list)
    still_in_use: list[str] = field(default_factory=list)
    from_environment: bool = False


@sensitive_variables()
def _reencrypt_row(model, column: str, purpose: str, pk, target: MasterKey) -> bool:
    with transaction.atomic():
        token = model.objects.filter(pk=pk).values_list(column, flat=True).first()
        if not token or token.startswith(f"{TOKEN_PREFIX}{target.key_id}:"):
            return False
        fresh = _encrypt_with(target, decrypt(token, purpose=purpose), purpose)
        # Conditional: a row rewritten meanwhile is left alone (the next run sees it).
        return bool(model.objects.filter(pk=pk, **{column: token}).update(**{column: fresh}))


def rotate_master_key(on_row: Callable[[int], None] | None = None) -> RotationReport:
    """Re-encrypt every secret with a new master key, then retire the keys no row uses.

    The new key is written first (as the current one, the old ones kept), rows are
    re-encrypted one by one in short transactions, and the old key leaves the file only when
    no row needs it. Interrupted, the console keeps working with both keys, and running this
    again resumes with the same new key. With ``STEWARD_MASTER_KEY`` the operator supplies
    ``<new>,<old>`` and removes the old key afterwards.
    """
    keys = load_keys()
    if not keys:
        current_key()  # raises the "no master key" error
    report = RotationReport(key_id=keys[0].key_id)
    if settings.STEWARD_MASTER_KEY:
        report.from_environment = True
        if len(keys) < 2:
            raise MasterKeyError(
                f"{ENV_VARIABLE} holds one key. To rotate, set it to '<new key>,<old key>' on "
                "every Steward process (the first key encrypts), then run rotate_master_key "
                "again. A new key is 32 random bytes, base64url encoded."
            )
        target = keys[0]
    elif len(keys) > 1:
        target, report.resumed = keys[0], True
    else:
        target = generate_key()
        write_key_file([target, *keys])
        keys = [target, *keys]
        report.key_id = target.key_id
    for model, column, purpose in _columns():
        pks = (
            model.objects.exclude(**{column: ""})
            .exclude(**{f"{column}__startswith": f"{TOKEN_PREFIX}{target.key_id}:"})
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for pk in list(pks):
            if _reencrypt_row(model, column, purpose, pk, target):
                report.reencrypted += 1
                if on_row:
                    on_row(report.reencrypted)
    used = key_ids_in_use()
    old = [k for k in keys if k.key_id != target.key_id]
    report.retired = [k.key_id for k in old if k.key_id not in used]
    report.still_in_use = [k.key_id for k in old if k.key_id in used]
    if not report.from_environment and report.retired:
        write_key_file([k for k in keys if k.key_id not in report.retired])
    logger.info(
        "Master key rotation: %d secrets re-encrypted with %s; retired %s",
        report.reencrypted,
        target.key_id,
        ", ".join(report.retired) or "none",
    )
    return report
