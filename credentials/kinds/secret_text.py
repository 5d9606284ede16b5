"""Secret text: one secret string, such as an API token."""

from __future__ import annotations

from django.views.decorators.debug import sensitive_variables

from credentials.forms import CredentialForm, SecretField
from credentials.kinds import register
from credentials.kinds.base import CredentialKind


class SecretTextForm(CredentialForm):
    kind_key = "string"
    secret_field_names = ("secret",)

    secret = SecretField(label="Secret", mode="password")

    @sensitive_variables()
    def kind_values(self):
        return "", False, {}, {"secret": self.secret("secret")}


@register
class SecretText(CredentialKind):
    key = "string"
    display_name = "Secret text"
    description = "A secret string, such as an API token, used by builds."
    jenkins_class = "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl"
    icon = "lock"
    order = 30
    form_class = SecretTextForm
    secret_fields = ("secret",)

    @classmethod
    def name_of(cls, credential) -> str:
        # Jenkins: the description, else the kind's name.
        return (credential.description or "").strip() or "Secret text"
