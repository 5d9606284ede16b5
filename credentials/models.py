"""Credentials, their domains and where they are used. Secrets live only as ciphertext."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import models
from django.urls import reverse

SYSTEM_STORE = "system"
GLOBAL_DOMAIN_URL_NAME = "_"


class Scope(models.TextChoices):
    GLOBAL = "GLOBAL", "Global (Steward, nodes, items, all child items, etc)"
    SYSTEM = "SYSTEM", "System (Steward and nodes only)"


SCOPE_HELP = {
    Scope.GLOBAL: "Available to Steward itself, to nodes, and to every job and build.",
    Scope.SYSTEM: (
        "Only available to Steward itself and its nodes (for example to launch an agent over "
        "SSH); jobs and builds cannot see it."
    ),
}


@dataclass(frozen=True)
class GlobalDomain:
    """The implicit domain every store has: "Global credentials (unrestricted)"."""

    pk: None = None
    name: str = "Global credentials (unrestricted)"
    short_name: str = "(global)"
    url_name: str = GLOBAL_DOMAIN_URL_NAME
    description: str = "Credentials that should be available everywhere."
    specifications: list = field(default_factory=list)
    is_global: bool = True
    store: str = SYSTEM_STORE

    def get_absolute_url(self) -> str:
        return reverse("credentials:domain", args=[self.store, self.url_name])


GLOBAL_DOMAIN = GlobalDomain()


class Domain(models.Model):
    """A named credentials domain with specifications that say where its credentials apply."""

    store = models.CharField(max_length=64, default=SYSTEM_STORE)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # [{"type": "hostname", "includes": "...", "excludes": "..."}, ...] — see domains.py
    specifications = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    is_global = False

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["store", "name"], name="credentials_domain_unique_name")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("credentials:domain", args=[self.store, self.url_name])

    @property
    def short_name(self) -> str:
        return self.name

    @property
    def url_name(self) -> str:
        return self.name


class Credential(models.Model):
    """One credential. Non-secret facts are columns; every secret is in ``encrypted_secrets``.

    ``encrypted_secrets`` holds one ciphertext (credentials.crypto) of a JSON object with the
    kind's secret fields. Only ``credentials.services.secret_values`` decrypts it.
    """

    store = models.CharField(max_length=64, default=SYSTEM_STORE)
    # NULL = the store's Global domain (implicit, so it can never be deleted or go missing).
    domain = models.ForeignKey(
        Domain, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    credential_id = models.CharField("ID", max_length=255)
    kind = models.CharField(max_length=64)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.GLOBAL)
    description = models.CharField(max_length=1000, blank=True)
    # Blank when "Treat username as secret": then the username is one of the secrets.
    username = models.CharField(max_length=255, blank=True)
    username_secret = models.BooleanField("Treat username as secret", default=False)
    # Kind-specific non-secret facts: file name and size, public key and fingerprint,
    # certificate subject and expiry...
    details = models.JSONField(default=dict, blank=True)
    encrypted_secrets = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["credential_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "credential_id"], name="credentials_credential_unique_id"
            )
        ]

    def __str__(self) -> str:
        return self.credential_id

    def get_absolute_url(self) -> str:
        return reverse(
            "credentials:credential",
            args=[self.store, self.domain_or_global.url_name, self.credential_id],
        )

    @property
    def kind_class(self):
        from credentials.kinds import get_kind

        return get_kind(self.kind)

    @property
    def kind_name(self) -> str:
        return self.kind_class.display_name

    @property
    def display_name(self) -> str:
        """The "Name" column, like Jenkins' CredentialsNameProvider (never a secret)."""
        return self.kind_class.name_of(self)

    @property
    def domain_or_global(self) -> Domain | GlobalDomain:
        return self.domain if self.domain_id else GLOBAL_DOMAIN

    @property
    def scope_label(self) -> str:
        return Scope(self.scope).label


class CredentialUsage(models.Model):
    """Where a credential was used (Jenkins' fingerprint facets), one row per consumer.

    Written with an UPSERT by ``credentials.services.record_usage``; never one row per use.
    """

    credential = models.ForeignKey(Credential, on_delete=models.CASCADE, related_name="usages")
    consumer_type = models.CharField(max_length=32)  # "node", "job", "build"...
    consumer_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    url = models.CharField(max_length=500, blank=True)
    first_used_at = models.DateTimeField()
    last_used_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_used_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "consumer_type", "consumer_id"],
                name="credentials_usage_unique_consumer",
            )
        ]

    def __str__(self) -> str:
        return f"{self.credential_id} used by {self.consumer_type} {self.name}"
