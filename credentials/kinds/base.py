"""The base class of credential kinds."""

from __future__ import annotations

from typing import ClassVar

from credentials.forms import CredentialForm


class CredentialKind:
    """One kind of credential. Subclasses set the class attributes and register themselves."""

    key: ClassVar[str]  # stable name, stored in Credential.kind (Jenkins' binding symbol)
    display_name: ClassVar[str]  # Jenkins' label, e.g. "Username with password"
    description: ClassVar[str] = ""
    jenkins_class: ClassVar[str] = ""  # the Jenkins class it mirrors (for API clients)
    icon: ClassVar[str] = "key"
    order: ClassVar[int] = 100
    form_class: ClassVar[type[CredentialForm]] = CredentialForm
    # Names of the secret fields (form fields and keys of the encrypted JSON).
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Secret fields that hold bytes (stored base64 inside the encrypted JSON).
    binary_fields: ClassVar[frozenset[str]] = frozenset()
    # Facts (<dt>/<dd> pairs) for the credential's page, and an optional section below them.
    detail_template: ClassVar[str] = "credentials/kinds/none.html"
    detail_section_template: ClassVar[str] = ""
    has_username: ClassVar[bool] = False

    @classmethod
    def warnings(cls, credential) -> list[str]:
        """Problems to show on the credential's page (an expired certificate...)."""
        return []

    @classmethod
    def name_of(cls, credential) -> str:
        """The "Name" column: never a secret (Jenkins' CredentialsNameProvider)."""
        return _with_description(credential.credential_id, credential)


def _with_description(name: str, credential) -> str:
    description = (credential.description or "").strip()
    return f"{name} ({description})" if description else name


def username_shown(credential) -> str:
    return "******" if credential.username_secret else credential.username


class UnknownKind(CredentialKind):
    key = ""
    display_name = "Unknown kind"

    @classmethod
    def for_key(cls, key: str) -> type[CredentialKind]:
        return type("UnknownKind", (cls,), {"key": key, "display_name": f"Unknown kind ({key})"})
