"""Credential kinds behind one registry. Each kind is one module in this package.

A kind is a class with its display name, form class, secret fields and the template fragment
of its detail page. Modules here are imported automatically, so adding a kind touches one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from credentials.kinds.base import CredentialKind, UnknownKind

_REGISTRY: dict[str, type[CredentialKind]] = {}


def register(kind: type[CredentialKind]) -> type[CredentialKind]:
    if kind.key in _REGISTRY and _REGISTRY[kind.key] is not kind:
        raise ValueError(f"credential kind {kind.key!r} registered twice")
    _REGISTRY[kind.key] = kind
    return kind


def get_kind(key: str) -> type[CredentialKind]:
    """The kind for ``key``; a placeholder kind for rows whose kind no longer exists."""
    kind = _REGISTRY.get(key)
    return kind if kind is not None else UnknownKind.for_key(key)


def all_kinds() -> list[type[CredentialKind]]:
    return sorted(_REGISTRY.values(), key=lambda k: (k.order, k.display_name))


def kind_choices() -> list[tuple[str, str]]:
    return [(k.key, k.display_name) for k in all_kinds()]


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["CredentialKind", "all_kinds", "get_kind", "kind_choices", "register"]
