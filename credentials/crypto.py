"""Placeholder replaced by the credentials work in progress."""


def ensure_master_key() -> None:
    return None
