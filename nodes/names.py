"""Jenkins' rules for names of nodes (and jobs): ``Jenkins.checkGoodName`` and its messages."""

from __future__ import annotations

from django.core.exceptions import ValidationError

UNSAFE_CHARACTERS = "?*/\\%!@#$^&|<>[]:;"


def check_good_name(name: str) -> None:
    """Raise ValidationError with Jenkins' message if ``name`` is not an acceptable name."""
    name = name.strip()
    if not name:
        raise ValidationError("No name is specified", code="required")
    if name in {".", ".."}:
        raise ValidationError("“%(name)s” is not an allowed name", params={"name": name})
    for ch in name:
        if ord(ch) < 32 or ord(ch) == 127:
            raise ValidationError(
                "No control code is allowed: %(code)s", params={"code": ord(ch)}, code="control"
            )
        if ch in UNSAFE_CHARACTERS:
            raise ValidationError(
                "‘%(ch)s’ is an unsafe character", params={"ch": ch}, code="unsafe"
            )
    if name.endswith("."):
        raise ValidationError("A name cannot end with ‘.’", code="trailing_dot")
    if name.startswith("(") and name.endswith(")"):
        # Names like "(built-in)" are reserved for the built-in node's URL.
        raise ValidationError("“%(name)s” is not an allowed name", params={"name": name})
