"""The Django admin shows credentials without any secret, not even ciphertext, and cannot edit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from credentials import services
from credentials.models import Credential, CredentialUsage, Domain
from credentials.tests.factories import assert_no_secret, make_credential, make_domain

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored():
    domain = make_domain("Production", [{"type": "scheme", "schemes": "ssh"}])
    credentials = [
        make_credential(
            "usernamePassword", "git-login", username="hidden-user", username_secret=True
        ),
        make_credential("sshUserPrivateKey", "agent-key", domain=domain),
        make_credential("string", "api-token"),
        make_credential("file", "kubeconfig"),
        make_credential("certificate", "client-cert"),
    ]
    services.record_usage(credentials[1], "node", 1, "build-1")
    return credentials


def admin_pages(credentials) -> list[str]:
    pages = [reverse("admin:index"), reverse("admin:app_list", args=["credentials"])]
    for model in (Credential, Domain, CredentialUsage):
        pages.append(reverse(f"admin:credentials_{model._meta.model_name}_changelist"))
        for obj in model.objects.all():
            pages.append(
                reverse(f"admin:credentials_{model._meta.model_name}_change", args=[obj.pk])
            )
    for c in credentials:
        pages.append(reverse("admin:credentials_credential_delete", args=[c.pk]))
    return pages


def test_every_admin_page_renders_without_secrets(admin_client, stored):
    for page in admin_pages(stored):
        response = admin_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert_no_secret(html, stored)
        assert "steward:v1:" not in html
        assert "encrypted_secrets" not in html


def test_admin_shows_public_facts(admin_client, stored):
    html = admin_client.get(
        reverse("admin:credentials_credential_change", args=[stored[1].pk])
    ).content.decode()
    assert "agent-key" in html and stored[1].details["fingerprint"] in html


def test_admin_cannot_add_or_change(admin_client, stored):
    assert admin_client.get(reverse("admin:credentials_credential_add")).status_code == 403
    before = stored[2].encrypted_secrets
    admin_client.post(
        reverse("admin:credentials_credential_change", args=[stored[2].pk]),
        {"description": "changed", "encrypted_secrets": "steward:v1:forged"},
    )
    stored[2].refresh_from_db()
    assert stored[2].encrypted_secrets == before and stored[2].description == ""


def test_admin_can_delete(admin_client, stored):
    response = admin_client.post(
        reverse("admin:credentials_credential_delete", args=[stored[2].pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Credential.objects.filter(pk=stored[2].pk).exists()


def test_non_staff_personas_have_no_admin(operator_client, viewer_client, stored):
    for client in (operator_client, viewer_client):
        response = client.get(reverse("admin:credentials_credential_changelist"))
        assert response.status_code == 302 and "/admin/login/" in response.url
