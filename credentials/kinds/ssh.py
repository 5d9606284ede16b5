"""SSH Username with private key: the key is parsed on save (RSA, ECDSA, Ed25519; OpenSSH and
PEM; encrypted or not) and its public key and SHA256 fingerprint are shown afterwards."""

from __future__ import annotations

import binascii
import io
import re
from dataclasses import dataclass

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django import forms
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from credentials.forms import CredentialForm, SecretField, UsernameFormMixin
from credentials.kinds import register
from credentials.kinds.base import CredentialKind, _with_description, username_shown

BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9 ]*?) ?PRIVATE KEY-----$", re.MULTILINE)
FORMATS = {
    "OPENSSH": "OpenSSH",
    "RSA": "PEM (PKCS#1)",
    "EC": "PEM (SEC 1)",
    "": "PEM (PKCS#8)",
    "ENCRYPTED": "PEM (PKCS#8)",
}
SUPPORTED_CURVES = {"secp256r1", "secp384r1", "secp521r1"}


class KeyProblem(Exception):
    """A private key that cannot be used; ``field`` is the form field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParsedKey:
    pkey: paramiko.PKey
    key_type: str  # "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"
    bits: int
    fingerprint: str  # "SHA256:..."
    public_key: str  # the authorized_keys line
    key_format: str
    encrypted: bool

    def details(self) -> dict:
        return {
            "key_type": self.key_type,
            "bits": self.bits,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "key_format": self.key_format,
            "encrypted": self.encrypted,
        }


def normalize_key(text: str) -> str:
    lines = [
        line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    ]
    return "\n".join(lines) + "\n"


@sensitive_variables()
def parse_private_key(text: str, passphrase: str = "") -> ParsedKey:
    """Read a private key as the SSH launcher will; raise KeyProblem with a clear message."""
    text = normalize_key(text)
    match = BEGIN.search(text)
    if match is None:
        first = text.lstrip()
        if first.startswith(("ssh-", "ecdsa-", "sk-")):
            raise KeyProblem(
                "private_key",
                "This is a public key. Enter the private key: it starts with a line like -----BEGIN OPENSSH PRIVATE KEY-----.",
            )
        if first.startswith("PuTTY-User-Key-File"):
            raise KeyProblem(
                "private_key",
                "PuTTY keys (.ppk) are not supported. Convert it first: puttygen key.ppk -O private-openssh -o key.",
            )
        raise KeyProblem(
            "private_key",
            "This is not a private key: it must start with a line like -----BEGIN OPENSSH PRIVATE KEY-----.",
        )
    label = match.group(1).strip()
    if label not in FORMATS:
        if label == "DSA":
            raise KeyProblem(
                "private_key",
                "DSA keys are not supported (OpenSSH and paramiko dropped them). Use an Ed25519, ECDSA or RSA key.",
            )
        raise KeyProblem("private_key", f"Unsupported private key type: {label} PRIVATE KEY.")
    end = f"-----END {label + ' ' if label else ''}PRIVATE KEY-----"
    if end not in text[match.end() :]:
        raise KeyProblem(
            "private_key", f"The private key is truncated: its last line ({end}) is missing."
        )
    data = text[match.start() : text.index(end, match.end()) + len(end)].encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    try:
        try:
            if label == "OPENSSH":
                key = serialization.load_ssh_private_key(data, password)
            else:
                key = serialization.load_pem_private_key(data, password)
            encrypted = password is not None
        except TypeError as exc:
            if "not encrypted" in str(exc):  # a passphrase for a plain key: ignore it
                key = (
                    serialization.load_ssh_private_key(data, None)
                    if label == "OPENSSH"
                    else serialization.load_pem_private_key(data, None)
                )
                encrypted = False
            else:
                raise KeyProblem(
                    "passphrase", "This private key is encrypted: enter its passphrase."
                ) from None
    except KeyProblem:
        raise
    except ValueError as exc:
        wrong = password is not None and (
            "password" in str(exc).lower() or "checksum" in str(exc).lower()
        )
        if wrong:
            raise KeyProblem(
                "passphrase", "Wrong passphrase: the private key could not be decrypted."
            ) from None
        raise KeyProblem(
            "private_key", "The private key is damaged or truncated: it could not be read."
        ) from None
    except (binascii.Error, UnsupportedAlgorithm, IndexError):
        raise KeyProblem(
            "private_key", "The private key is damaged or truncated: it could not be read."
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in SUPPORTED_CURVES:
            raise KeyProblem(
                "private_key",
                f"Unsupported ECDSA curve {key.curve.name}: use nistp256, nistp384 or nistp521.",
            )
        cls = paramiko.ECDSAKey
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise KeyProblem(
                "private_key",
                f"This RSA key has only {key.key_size} bits; SSH servers refuse keys below 1024 bits (use 3072 or an Ed25519 key).",
            )
        cls = paramiko.RSAKey
    else:
        raise KeyProblem("private_key", "Unsupported key type: use an Ed25519, ECDSA or RSA key.")
    # Hand paramiko the decrypted key in OpenSSH form: one path for every input format.
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    try:
        pkey = cls.from_private_key(io.StringIO(plain))
    except (paramiko.SSHException, ValueError):
        raise KeyProblem("private_key", "paramiko could not load this private key.") from None
    return ParsedKey(
        pkey=pkey,
        key_type=pkey.get_name(),
        bits=pkey.get_bits(),
        fingerprint=pkey.fingerprint,
        public_key=f"{pkey.get_name()} {pkey.get_base64()}",
        key_format=FORMATS[label],
        encrypted=encrypted,
    )


class SSHPrivateKeyForm(UsernameFormMixin, CredentialForm):
    kind_key = "sshUserPrivateKey"
    secret_field_names = ("username", "private_key", "passphrase")

    private_key_source = forms.ChoiceField(
        label="Private Key",
        choices=[("direct", "Enter directly")],
        initial="direct",
        widget=forms.RadioSelect,
        required=False,
    )
    private_key = SecretField(
        label="Key",
        mode="textarea",
        help_text="Paste the private key: OpenSSH (-----BEGIN OPENSSH PRIVATE KEY-----) or PEM; RSA, ECDSA or Ed25519; encrypted keys need the passphrase below.",
    )
    passphrase = SecretField(label="Passphrase", mode="password", required=False)

    @sensitive_variables()
    def clean_kind(self) -> None:
        self.parsed = None
        if self.errors.get("private_key") or self.errors.get("passphrase"):
            return
        key = self.secret("private_key")
        if not key:
            return
        try:
            self.parsed = parse_private_key(key, self.secret("passphrase") or "")
        except KeyProblem as problem:
            self.add_error(problem.field, ValidationError(problem.message, code="invalid_key"))

    @sensitive_variables()
    def kind_values(self):
        username, username_secret, secrets = self.username_values()
        secrets["private_key"] = normalize_key(self.secret("private_key"))
        secrets["passphrase"] = self.secret("passphrase") or ""
        return username, username_secret, self.parsed.details(), secrets


@register
class SSHUserPrivateKey(CredentialKind):
    key = "sshUserPrivateKey"
    display_name = "SSH Username with private key"
    description = "An SSH username and private key, used to launch agents on nodes and by builds."
    jenkins_class = "com.cloudbees.jenkins.plugins.sshcredentials.impl.BasicSSHUserPrivateKey"
    icon = "terminal"
    order = 20
    form_class = SSHPrivateKeyForm
    secret_fields = ("username", "private_key", "passphrase")
    detail_template = "credentials/kinds/ssh.html"
    detail_section_template = "credentials/kinds/ssh_public_key.html"
    has_username = True

    @classmethod
    def name_of(cls, credential) -> str:
        return _with_description(username_shown(credential), credential)
