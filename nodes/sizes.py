"""Disk sizes as Jenkins writes them: "1GiB", "1.5GB", "100KiB", "512MB" (binary units)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes for a size string. Raises ValueError with a clear message on bad input."""
    match = _SIZE.match(text or "")
    if not match:
        raise ValueError(f"“{text}” is not a size (examples: 1GiB, 1.5GB, 100KiB, 512MB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(value: int | None) -> str:
    """1073741824 → "1.00 GiB" (like Jenkins' DiskSpace.getGbLeft style, readable)."""
    if value is None:
        return "N/A"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TiB"
