"""What the SSH launcher needs from the credentials app: a login (username plus a key or a
password) for the node's credential, looked up in the system context with the "ssh" scheme,
the host and port — and the use recorded. Secrets stay in memory, never on disk or in a log."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.views.decorators.debug import sensitive_variables

from credentials import services as credentials
from credentials.models import Credential
from nodes.launchers import LaunchError

SSH_KINDS = ("sshUserPrivateKey", "usernamePassword")


@dataclass(frozen=True)
class SSHLogin:
    username: str
    display_username: str  # "****" when the username is treated as secret
    private_key: object | None = None
    password: str | None = field(default=None, repr=False)


def ssh_requirement(node) -> credentials.CredentialRequirement:
    config = node.launcher_config or {}
    return credentials.CredentialRequirement(
        kinds=SSH_KINDS,
        hostname=(config.get("host") or "").strip() or None,
        port=int(config.get("port") or 22),
        scheme="ssh",
        scopes=credentials.SYSTEM_CONTEXT,
    )


@sensitive_variables()
def ssh_login(credentials_id: str, node) -> SSHLogin:
    """The login for ``credentials_id``, or LaunchError in Jenkins' words."""
    credential = (
        Credential.objects.select_related("domain").filter(credential_id=credentials_id).first()
        if credentials_id
        else None
    )
    if credential is None:
        raise LaunchError(
            f"Cannot find SSH User credentials with id: {credentials_id}", retry=False
        )
    reason = credentials.explain(credential, ssh_requirement(node))
    if reason:
        raise LaunchError(
            f"The credentials ‘{credentials_id}’ cannot be used for this node: {reason}",
            retry=False,
        )
    try:
        username = credentials.username_of(credential)
        display = "****" if credential.username_secret else username
        if credential.kind == "sshUserPrivateKey":
            login = SSHLogin(
                username, display, private_key=credentials.load_private_key(credential)
            )
        else:
            login = SSHLogin(
                username, display, password=str(credentials.get_secret(credential, "password"))
            )
    except Exception as exc:  # decryption or key errors: name the cause, never the secret
        raise LaunchError(
            f"The credentials ‘{credentials_id}’ cannot be read: {type(exc).__name__}: {exc}",
            retry=False,
        ) from exc
    credentials.record_usage(
        credential, "node", node.pk, node.display_name, node.get_absolute_url_safe()
    )
    return login
