"""Username with password."""

from __future__ import annotations

from django.views.decorators.debug import sensitive_variables

from credentials.forms import CredentialForm, SecretField, UsernameFormMixin
from credentials.kinds import register
from credentials.kinds.base import CredentialKind, _with_description, username_shown


class UsernamePasswordForm(UsernameFormMixin, CredentialForm):
    kind_key = "usernamePassword"
    secret_field_names = ("username", "password")

    password = SecretField(label="Password", mode="password")

    @sensitive_variables()
    def kind_values(self):
        username, username_secret, secrets = self.username_values()
        secrets["password"] = self.secret("password")
        return username, username_secret, {}, secrets


@register
class UsernamePassword(CredentialKind):
    key = "usernamePassword"
    display_name = "Username with password"
    description = "Commonly used for authentication to services like Git, APIs, or registries."
    jenkins_class = "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl"
    icon = "user"
    order = 10
    form_class = UsernamePasswordForm
    secret_fields = ("username", "password")
    detail_template = "credentials/kinds/username.html"
    has_username = True

    @classmethod
    def name_of(cls, credential) -> str:
        return _with_description(f"{username_shown(credential)}/******", credential)
