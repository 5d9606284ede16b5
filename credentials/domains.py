"""Domain specifications and matching, as in Jenkins' credentials plugin (``Domain.test``).

A requirement (host, port, URI scheme, path) is tested against each specification of a
domain; for each part of the requirement the first *definitive* answer decides. NEGATIVE
excludes the domain; when no specification is definitive the domain matches. Every answer
carries a sentence, so the console can say why a credential is not offered.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

SPEC_TYPES = {
    "hostname": "Hostname",
    "hostname_port": "Hostname:port",
    "scheme": "URI scheme",
    "path": "URI path",
}


class Result(enum.Enum):
    """(definitive, match) like Jenkins' DomainSpecification.Result."""

    UNKNOWN = (False, False)
    PARTIAL = (False, True)
    POSITIVE = (True, True)
    NEGATIVE = (True, False)

    @property
    def definitive(self) -> bool:
        return self.value[0]

    @property
    def match(self) -> bool:
        return self.value[1]


@dataclass(frozen=True)
class Requirement:
    """What a consumer needs a credential for (SSH launcher: hostname, port, scheme "ssh")."""

    hostname: str | None = None
    port: int | None = None
    scheme: str | None = None
    path: str | None = None

    def parts(self) -> list[tuple[str, str]]:
        """The atomic requirements, like Jenkins' HostnameRequirement, SchemeRequirement..."""
        parts: list[tuple[str, str]] = []
        if self.scheme:
            parts.append(("scheme", self.scheme.lower()))
        if self.hostname:
            parts.append(("hostname", self.hostname))
            if self.port is not None:
                parts.append(("hostname_port", f"{self.hostname}:{self.port}"))
        if self.path:
            parts.append(("path", self.path))
        return parts


def split_patterns(text: str, separators: str = r"[,\n ]") -> list[str]:
    return [p.strip() for p in re.split(separators, text or "") if p.strip()]


@lru_cache(maxsize=512)
def _wildcard_regex(pattern: str) -> re.Pattern:
    # FilenameUtils.wildcardMatch: "*" any run, "?" one character, case-insensitive.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL)


def wildcard_match(value: str, pattern: str) -> bool:
    return bool(_wildcard_regex(pattern).match(value))


@lru_cache(maxsize=512)
def _ant_regex(pattern: str, case_sensitive: bool) -> re.Pattern:
    # Ant path patterns: "**" any number of directories, "*" within one segment, "?" one char.
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$", 0 if case_sensitive else re.IGNORECASE)


def ant_match(path: str, pattern: str, case_sensitive: bool = True) -> bool:
    return bool(_ant_regex(pattern, case_sensitive).match(path))


@dataclass(frozen=True)
class Verdict:
    result: Result
    reason: str = ""


def _includes_excludes(
    value: str, includes: list[str], excludes: list[str], label: str, match
) -> Verdict:
    if includes and not any(match(value, p) for p in includes):
        return Verdict(
            Result.NEGATIVE, f"{value} is not in its {label} includes ({', '.join(includes)})"
        )
    for pattern in excludes:
        if match(value, pattern):
            return Verdict(Result.NEGATIVE, f"{value} is in its {label} excludes ({pattern})")
    return Verdict(Result.PARTIAL)


def match_specification(spec: dict, part: str, value: str) -> Verdict:
    """One specification against one atomic requirement."""
    kind = spec.get("type")
    if kind == "hostname" and part in {"hostname", "hostname_port"}:
        host = value.rsplit(":", 1)[0] if part == "hostname_port" else value
        return _includes_excludes(
            host,
            split_patterns(spec.get("includes", "")),
            split_patterns(spec.get("excludes", "")),
            "Hostname",
            wildcard_match,
        )
    if kind == "hostname_port" and part == "hostname_port":
        # A pattern without ":" means any port.
        def with_port(patterns: list[str]) -> list[str]:
            return [p if ":" in p else f"{p}:*" for p in patterns]

        return _includes_excludes(
            value,
            with_port(split_patterns(spec.get("includes", ""))),
            with_port(split_patterns(spec.get("excludes", ""))),
            "Hostname:port",
            wildcard_match,
        )
    if kind == "scheme" and part == "scheme":
        schemes = [s.lower() for s in split_patterns(spec.get("schemes", ""), r"[,\n ]")]
        if value.lower() in schemes:
            return Verdict(Result.PARTIAL)
        return Verdict(
            Result.NEGATIVE, f"the URI scheme {value} is not one of {', '.join(schemes)}"
        )
    if kind == "path" and part == "path":
        case = bool(spec.get("case_sensitive", True))
        return _includes_excludes(
            value,
            split_patterns(spec.get("includes", ""), r"[,\n]"),
            split_patterns(spec.get("excludes", ""), r"[,\n]"),
            "URI path",
            lambda v, p: ant_match(v, p, case),
        )
    return Verdict(Result.UNKNOWN)


def match_domain(specifications: list[dict], requirement: Requirement) -> Verdict:
    """Jenkins' ``Domain.test``: does a domain with these specifications apply?"""
    for part, value in requirement.parts():
        for spec in specifications:
            verdict = match_specification(spec, part, value)
            if verdict.result.definitive:
                if not verdict.result.match:
                    return verdict
                break
            if verdict.result is Result.NEGATIVE:  # pragma: no cover - NEGATIVE is definitive
                return verdict
    return Verdict(Result.POSITIVE)


def describe_specification(spec: dict) -> list[tuple[str, str]]:
    """(label, value) pairs for showing a specification on a page."""
    kind = spec.get("type")
    if kind in {"hostname", "hostname_port", "path"}:
        facts = [
            ("Include", spec.get("includes") or "(any)"),
            ("Exclude", spec.get("excludes") or "(none)"),
        ]
        if kind == "path":
            facts.append(("Case sensitive", "Yes" if spec.get("case_sensitive", True) else "No"))
        return facts
    if kind == "scheme":
        return [("Schemes", spec.get("schemes", ""))]
    return []
