"""Credential state changes and look-ups, used by views, other apps, the admin and commands.

``secret_values`` is the one accessor that decrypts a credential; launchers and builds call it
(or ``get_secret``) at the moment they need a secret, and never keep or log what it returns.
``credentials_for`` answers "which credentials may this consumer use, and why not the others";
``record_usage`` notes where a credential was used.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from credentials import crypto
from credentials.domains import Requirement, match_domain
from credentials.forms import CredentialInput
from credentials.kinds import get_kind
from credentials.models import (
    GLOBAL_DOMAIN,
    SYSTEM_STORE,
    Credential,
    CredentialUsage,
    Domain,
    GlobalDomain,
    Scope,
)

logger = logging.getLogger("steward.credentials")

SECRETS_PURPOSE = "credentials.Credential.secrets"


class DuplicateCredentialId(Exception):
    """The store already has a credential with this ID."""


# --- the one decrypt accessor -------------------------------------------------------------


@sensitive_variables()
def _encrypt_secrets(kind: str, secrets: dict) -> str:
    binary = get_kind(kind).binary_fields
    payload = {
        name: base64.b64encode(value).decode("ascii") if name in binary else value
        for name, value in secrets.items()
    }
    return crypto.encrypt(json.dumps(payload).encode(), purpose=SECRETS_PURPOSE)


@sensitive_variables()
def secret_values(credential: Credential) -> dict[str, str | bytes]:
    """Every secret of ``credential``, decrypted (bytes for files and keystores).

    Raises ``crypto.DecryptionError`` / ``crypto.MasterKeyError`` with a clear message, never
    a partial value. Hold the result only as long as needed; never log or render it.
    """
    if not credential.encrypted_secrets:
        return {}
    payload = json.loads(crypto.decrypt(credential.encrypted_secrets, purpose=SECRETS_PURPOSE))
    binary = credential.kind_class.binary_fields
    return {
        name: base64.b64decode(value) if name in binary else value
        for name, value in payload.items()
    }


@sensitive_variables()
def get_secret(credential: Credential, field_name: str) -> str | bytes:
    """One secret field (``password``, ``private_key``, ``passphrase``, ``secret``, ``file``,
    ``keystore``); also ``username``, whether or not it is treated as secret."""
    if field_name == "username" and not credential.username_secret:
        return credential.username
    values = secret_values(credential)
    if field_name not in values:
        raise KeyError(f"{credential.kind_name} credentials have no secret {field_name!r}")
    return values[field_name]


def username_of(credential: Credential) -> str:
    """The username of a username kind (decrypted when it is treated as secret)."""
    return str(get_secret(credential, "username"))


def load_private_key(credential: Credential):
    """The paramiko key of an "SSH Username with private key" credential, for launchers."""
    from credentials.kinds.ssh import parse_private_key

    values = secret_values(credential)
    return parse_private_key(values["private_key"], values.get("passphrase", "")).pkey


# --- credentials --------------------------------------------------------------------------


def _actor(user) -> str:
    return getattr(user, "username", None) or "system"


@sensitive_variables()
def create_credential(
    data: CredentialInput,
    *,
    domain: Domain | GlobalDomain | None = None,
    store: str = SYSTEM_STORE,
    actor=None,
) -> Credential:
    real_domain = domain if isinstance(domain, Domain) else None
    credential = Credential(
        store=store,
        domain=real_domain,
        credential_id=data.credential_id,
        kind=data.kind,
        scope=data.scope,
        description=data.description,
        username=data.username,
        username_secret=data.username_secret,
        details=data.details,
        encrypted_secrets=_encrypt_secrets(data.kind, data.secrets),
    )
    try:
        with transaction.atomic():
            credential.save()
    except IntegrityError:
        if Credential.objects.filter(store=store, credential_id=data.credential_id).exists():
            raise DuplicateCredentialId(data.credential_id) from None
        raise
    logger.info(
        "Credential %s (%s) created in %s by %s",
        credential.credential_id,
        credential.kind,
        credential.domain_or_global.short_name,
        _actor(actor),
    )
    return credential


@sensitive_variables()
def update_credential(credential: Credential, data: CredentialInput, *, actor=None) -> Credential:
    """Apply an update; the form already merged untouched secrets with the stored ones."""
    credential.scope = data.scope
    credential.description = data.description
    credential.username = data.username
    credential.username_secret = data.username_secret
    credential.details = data.details
    credential.encrypted_secrets = _encrypt_secrets(credential.kind, data.secrets)
    credential.save()
    logger.info("Credential %s updated by %s", credential.credential_id, _actor(actor))
    return credential


def delete_credential(credential: Credential, *, actor=None) -> None:
    credential_id = credential.credential_id
    credential.delete()
    logger.info("Credential %s deleted by %s", credential_id, _actor(actor))


def move_credential(
    credential: Credential, destination: Domain | GlobalDomain, *, actor=None
) -> Credential:
    credential.domain = destination if isinstance(destination, Domain) else None
    credential.save(update_fields=["domain", "updated_at"])
    logger.info(
        "Credential %s moved to %s by %s",
        credential.credential_id,
        destination.short_name,
        _actor(actor),
    )
    return credential


# --- domains ------------------------------------------------------------------------------


def get_domain(store: str, url_name: str) -> Domain | GlobalDomain:
    """The domain at ``…/domain/<url_name>/`` (``_`` is Global). Raises Domain.DoesNotExist."""
    if url_name == GLOBAL_DOMAIN.url_name:
        return GLOBAL_DOMAIN
    return Domain.objects.get(store=store, name=url_name)


def domains_of(store: str = SYSTEM_STORE) -> list[Domain | GlobalDomain]:
    return [GLOBAL_DOMAIN, *Domain.objects.filter(store=store)]


def credentials_in(domain: Domain | GlobalDomain, store: str = SYSTEM_STORE):
    qs = Credential.objects.filter(store=store)
    return (
        qs.filter(domain__isnull=True)
        if isinstance(domain, GlobalDomain)
        else qs.filter(domain=domain)
    )


def create_domain(
    *,
    name: str,
    description: str = "",
    specifications: list[dict] | None = None,
    store: str = SYSTEM_STORE,
    actor=None,
) -> Domain:
    domain = Domain.objects.create(
        store=store, name=name, description=description, specifications=specifications or []
    )
    logger.info("Credentials domain %s created by %s", name, _actor(actor))
    return domain


def update_domain(
    domain: Domain, *, name: str, description: str, specifications: list[dict], actor=None
) -> Domain:
    domain.name, domain.description, domain.specifications = name, description, specifications
    domain.save()
    logger.info("Credentials domain %s updated by %s", name, _actor(actor))
    return domain


def delete_domain(domain: Domain, *, actor=None) -> int:
    """Delete a domain and all credentials in it; returns how many credentials went."""
    with transaction.atomic():
        count = domain.credentials.count()
        name = domain.name
        domain.delete()
    logger.info(
        "Credentials domain %s deleted with %d credentials by %s", name, count, _actor(actor)
    )
    return count


# --- usage --------------------------------------------------------------------------------


def record_usage(
    credential: Credential | int,
    consumer_type: str,
    consumer_id: str | int,
    name: str,
    url: str = "",
) -> None:
    """Note that ``credential`` was used by a consumer (a node launch, a build...).

    One UPSERT per call, one row per (credential, consumer): first use is kept, the last use,
    name and URL are refreshed. Cheap enough to call on every launch or build.
    """
    now = timezone.now()
    credential_pk = credential.pk if isinstance(credential, Credential) else credential
    CredentialUsage.objects.bulk_create(
        [
            CredentialUsage(
                credential_id=credential_pk,
                consumer_type=consumer_type,
                consumer_id=str(consumer_id),
                name=name[:255],
                url=url[:500],
                first_used_at=now,
                last_used_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["credential", "consumer_type", "consumer_id"],
        update_fields=["name", "url", "last_used_at"],
    )


def forget_usage(consumer_type: str, consumer_id: str | int) -> int:
    """Drop the usage rows of a consumer that no longer exists (a deleted node)."""
    deleted, _ = CredentialUsage.objects.filter(
        consumer_type=consumer_type, consumer_id=str(consumer_id)
    ).delete()
    return deleted


# --- which credentials a consumer may use -------------------------------------------------

# Scopes visible from each context: Steward itself and nodes see both; jobs and builds only
# GLOBAL (Jenkins: "Jobs cannot see" System credentials).
SYSTEM_CONTEXT = (Scope.GLOBAL, Scope.SYSTEM)
ITEM_CONTEXT = (Scope.GLOBAL,)


@dataclass(frozen=True)
class CredentialRequirement:
    """What a consumer needs: kinds (empty = any), where it connects, which scopes it sees."""

    kinds: tuple[str, ...] = ()
    hostname: str | None = None
    port: int | None = None
    scheme: str | None = None
    path: str | None = None
    scopes: tuple[str, ...] = SYSTEM_CONTEXT
    store: str = SYSTEM_STORE

    @property
    def domain_requirement(self) -> Requirement:
        return Requirement(self.hostname, self.port, self.scheme, self.path)


@dataclass
class CredentialChoices:
    """The answer: credentials offered, and every other credential with the reason why not."""

    offered: list[Credential] = field(default_factory=list)
    not_offered: list[tuple[Credential, str]] = field(default_factory=list)

    def reason_for(self, credential_id: str) -> str | None:
        """Why the credential with this ID is not offered; None if it is (or does not exist)."""
        return next((r for c, r in self.not_offered if c.credential_id == credential_id), None)

    def is_offered(self, credential_id: str) -> bool:
        return any(c.credential_id == credential_id for c in self.offered)


def _kinds_sentence(kinds: tuple[str, ...]) -> str:
    names = [get_kind(k).display_name for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def explain(credential: Credential, requirement: CredentialRequirement) -> str:
    """ "" if ``credential`` may be offered for ``requirement``, else why not (one sentence)."""
    if requirement.kinds and credential.kind not in requirement.kinds:
        return (
            f"It is a {credential.kind_name} credential; this needs "
            f"{_kinds_sentence(requirement.kinds)}."
        )
    if credential.scope not in requirement.scopes:
        return (
            f"Its scope is {credential.scope_label}: jobs and builds cannot use it. "
            "Change its scope to Global to use it here."
        )
    if credential.domain_id:
        verdict = match_domain(credential.domain.specifications, requirement.domain_requirement)
        if not verdict.result.match:
            return f"Its domain ‘{credential.domain.name}’ does not apply here: {verdict.reason}."
    return ""


def credentials_for(requirement: CredentialRequirement) -> CredentialChoices:
    """Credentials a consumer may choose for ``requirement``, with reasons for the others."""
    choices = CredentialChoices()
    for credential in Credential.objects.filter(store=requirement.store).select_related("domain"):
        reason = explain(credential, requirement)
        if reason:
            choices.not_offered.append((credential, reason))
        else:
            choices.offered.append(credential)
    return choices


def matching_credentials(
    *,
    kinds: tuple[str, ...] | list[str] = (),
    hostname: str | None = None,
    port: int | None = None,
    scheme: str | None = None,
    path: str | None = None,
    scopes: tuple[str, ...] | list[str] = SYSTEM_CONTEXT,
) -> CredentialChoices:
    """Keyword form of :func:`credentials_for` (the SSH launcher: kinds, hostname, port, "ssh")."""
    return credentials_for(
        CredentialRequirement(
            kinds=tuple(kinds),
            hostname=hostname,
            port=port,
            scheme=scheme,
            path=path,
            scopes=tuple(scopes),
        )
    )
