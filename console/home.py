"""The data directory (STEWARD_HOME, like JENKINS_HOME) and the secret files kept in it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def write_private_file(path: Path, content: str) -> None:
    """Write a file readable by its owner only, atomically (never a half-written secret)."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_or_create_secret(path: Path, nbytes: int = 48) -> str:
    """Return the secret stored at ``path``, creating it (0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    # O_EXCL-like behaviour: if another process won the race, keep its value.
    write_private_file(path, value + "\n")
    return path.read_text().strip()
