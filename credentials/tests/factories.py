"""Test factories: real SSH keys and PKCS#12 keystores, and one credential or domain each."""

from __future__ import annotations

import base64
import datetime
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from credentials import services
from credentials.forms import CredentialInput
from credentials.models import Domain, Scope

PASSWORD = "s3cret-Password-Tiger-7"
API_TOKEN = "tok_live_Zebra-Quasar-918273"
PASSPHRASE = "correct passphrase 42"
FILE_CONTENT = b"apiVersion: v1\nclusters:\n- cluster:\n    token: kube-Secret-Falcon-5521\n"


def private_key(kind: str = "ed25519"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def ssh_key_text(kind: str = "ed25519", fmt: str = "openssh", passphrase: str | None = None) -> str:
    """A private key as a user would paste it: OpenSSH, PEM (PKCS#1 / SEC 1) or PKCS#8."""
    key = private_key(kind)
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    formats = {
        "openssh": serialization.PrivateFormat.OpenSSH,
        "pem": serialization.PrivateFormat.TraditionalOpenSSL,
        "pkcs8": serialization.PrivateFormat.PKCS8,
    }
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], encryption).decode()


def ssh_keygen(
    kind: str = "ed25519", passphrase: str = "", fmt: str | None = None
) -> tuple[str, str]:
    """(private key, public key line) made by OpenSSH's ssh-keygen itself."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "key"
        argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)]
        if fmt:
            argv += ["-m", fmt]
        subprocess.run(argv, check=True, capture_output=True)
        public = " ".join(path.with_suffix(".pub").read_text().split()[:2])
        return path.read_text(), public


def keystore(
    password: str | None = "keystore-pass",
    cn: str = "build.example.com",
    days: int = 365,
    with_key: bool = True,
) -> bytes:
    """A PKCS#12 bundle with a self-signed certificate (and its key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    if with_key:
        return pkcs12.serialize_key_and_certificates(b"client", key, cert, None, encryption)
    return pkcs12.serialize_key_and_certificates(b"client", None, None, [cert], encryption)


def make_domain(
    name: str = "Production", specifications: list[dict] | None = None, description: str = ""
) -> Domain:
    return services.create_domain(
        name=name, description=description, specifications=specifications or []
    )


def make_credential(
    kind: str = "string",
    credential_id: str = "token",
    *,
    domain=None,
    scope: str = Scope.GLOBAL,
    description: str = "",
    username: str = "deploy",
    username_secret: bool = False,
    **secrets,
):
    """One credential of ``kind`` with sensible secrets (override any by keyword)."""
    details: dict = {}
    if kind == "usernamePassword":
        secrets.setdefault("password", PASSWORD)
    elif kind == "string":
        secrets.setdefault("secret", API_TOKEN)
    elif kind == "sshUserPrivateKey":
        from credentials.kinds.ssh import parse_private_key

        secrets.setdefault("private_key", ssh_key_text("ed25519", passphrase=PASSPHRASE))
        secrets.setdefault("passphrase", PASSPHRASE)
        details = parse_private_key(secrets["private_key"], secrets["passphrase"]).details()
    elif kind == "file":
        secrets.setdefault("file", FILE_CONTENT)
        details = {"filename": "kubeconfig", "size": len(secrets["file"])}
    elif kind == "certificate":
        from credentials.kinds.certificate import read_keystore

        secrets.setdefault("password", "keystore-pass")
        secrets.setdefault("keystore", keystore(secrets["password"]))
        details = read_keystore(secrets["keystore"], secrets["password"])
    has_username = kind in {"usernamePassword", "sshUserPrivateKey"}
    if has_username and username_secret:
        secrets["username"] = username
    data = CredentialInput(
        kind=kind,
        scope=scope,
        credential_id=credential_id,
        description=description,
        username=username if has_username and not username_secret else "",
        username_secret=has_username and username_secret,
        details=details,
        secrets=secrets,
    )
    return services.create_credential(data, domain=domain)


def every_secret(credential) -> list[str]:
    """Every secret value of a credential as text that could leak into a page, plus its ciphertext."""
    out = [credential.encrypted_secrets]
    for value in services.secret_values(credential).values():
        if isinstance(value, bytes):
            try:
                value = value.decode()  # a text file leaks as its text
            except UnicodeDecodeError:
                value = base64.b64encode(value).decode()  # binary would leak encoded
        # Each line of a multi-line secret (not the public -----BEGIN/END----- armour lines).
        lines = [
            line for line in value.splitlines() if len(line) >= 8 and not line.startswith("-----")
        ]
        out += lines or ([value] if value else [])
    return out


def assert_no_secret(html: str, credentials) -> None:
    for credential in credentials:
        for secret in every_secret(credential):
            assert secret not in html, f"a secret of {credential.credential_id} is in the page"
