"""Certificate: a PKCS#12 keystore (certificate and private key) with its password."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from credentials.forms import KEEP, MAX_SECRET_FILE_BYTES, CredentialForm, SecretField
from credentials.kinds import register
from credentials.kinds.base import CredentialKind, _with_description


class KeystoreProblem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _key_description(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return type(key).__name__


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


@sensitive_variables()
def read_keystore(data: bytes, password: str) -> dict:
    """Open a PKCS#12 keystore; return its public facts or raise KeystoreProblem."""
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError as exc:
        if "password" in str(exc).lower():
            if password:
                raise KeystoreProblem(
                    "password", "Wrong password: the keystore could not be opened with it."
                ) from None
            raise KeystoreProblem(
                "password", "This keystore is protected by a password: enter it."
            ) from None
        raise KeystoreProblem(
            "keystore", "This file is not a PKCS#12 keystore, or it is damaged."
        ) from None
    if bundle.key is None and bundle.cert is None and not bundle.additional_certs:
        raise KeystoreProblem("keystore", "Empty keystore")
    if bundle.key is None:
        raise KeystoreProblem(
            "keystore",
            "The keystore holds no private key: a certificate credential needs the certificate and its key.",
        )
    if bundle.cert is None:
        raise KeystoreProblem("keystore", "The keystore holds no certificate for its private key.")
    cert = bundle.cert.certificate
    alias = bundle.cert.friendly_name.decode(errors="replace") if bundle.cert.friendly_name else ""
    return {
        "subject": cert.subject.rfc4514_string(),
        "common_name": _common_name(cert.subject),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "alias": alias,
        "key": _key_description(bundle.key),
        "chain": len(bundle.additional_certs),
    }


class CertificateForm(CredentialForm):
    kind_key = "certificate"
    secret_field_names = ("keystore", "password")

    keystore = SecretField(
        label="Certificate",
        mode="file",
        max_bytes=MAX_SECRET_FILE_BYTES,
        help_text="Upload PKCS#12 certificate and key (.p12 / .pfx).",
    )
    password = SecretField(label="Password", mode="password", required=False)

    def stored_note(self, name: str) -> str:
        if name == "keystore" and self.instance:
            return self.instance.details.get("common_name", "")
        return ""

    @sensitive_variables()
    def clean_kind(self) -> None:
        self.facts = None
        if self.errors.get("keystore") or self.errors.get("password"):
            return
        upload = self.cleaned_data.get("keystore")
        if upload is None:
            return
        self.keystore_bytes = (
            self._stored["keystore"] if upload is KEEP else b"".join(upload.chunks())
        )
        try:
            self.facts = read_keystore(self.keystore_bytes, self.secret("password") or "")
        except KeystoreProblem as problem:
            self.add_error(problem.field, ValidationError(problem.message, code="invalid_keystore"))

    @sensitive_variables()
    def kind_values(self):
        secrets = {"keystore": self.keystore_bytes, "password": self.secret("password") or ""}
        return "", False, dict(self.facts), secrets


@register
class Certificate(CredentialKind):
    key = "certificate"
    display_name = "Certificate"
    description = "Upload a PKCS#12 certificate and private key."
    jenkins_class = "com.cloudbees.plugins.credentials.impl.CertificateCredentialsImpl"
    icon = "certificate"
    order = 50
    form_class = CertificateForm
    secret_fields = ("keystore", "password")
    binary_fields = frozenset({"keystore"})
    detail_template = "credentials/kinds/certificate.html"

    @classmethod
    def name_of(cls, credential) -> str:
        return _with_description(
            credential.details.get("common_name") or credential.credential_id, credential
        )

    @classmethod
    def warnings(cls, credential) -> list[str]:
        not_after = credential.details.get("not_after")
        if not_after and datetime.datetime.fromisoformat(not_after) < datetime.datetime.now(
            datetime.UTC
        ):
            return [f"This certificate expired on {not_after[:10]}."]
        return []
