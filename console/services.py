"""Console state changes: the first admin, start-up of the data directory."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from console.home import ensure_dir, write_private_file
from console.permissions import ADMINISTRATORS, sync_groups


def ensure_initial_admin() -> Path | None:
    """On the first start, create the user ``admin`` with a random password, like Jenkins.

    The password is written to ``STEWARD_HOME/secrets/initialAdminPassword`` (0600), never
    printed. Returns the file's path when the admin was created now, else None.
    """
    User = get_user_model()
    if User.objects.exists():
        return None
    sync_groups()
    password = secrets.token_hex(16)
    path: Path = settings.STEWARD_INITIAL_ADMIN_PASSWORD_FILE
    ensure_dir(path.parent)
    write_private_file(path, password + "\n")
    user = User.objects.create_superuser("admin", email="", password=password)
    user.groups.add(Group.objects.get(name=ADMINISTRATORS))
    return path


def prepare_home() -> Path | None:
    """Everything a start needs in the data directory: folders, the credentials master key,
    groups and the first admin. Returns the initial admin password file if just created."""
    from credentials.crypto import ensure_master_key

    ensure_dir(settings.STEWARD_HOME)
    ensure_dir(settings.STEWARD_SECRETS_DIR)
    ensure_master_key()
    sync_groups()
    return ensure_initial_admin()
