"""SSH host key verification strategies, with the SSH Build Agents plugin's words (JENKINS.md b2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko
from django.utils import timezone

STRATEGIES = {
    "known_hosts": "Known hosts file Verification Strategy",
    "manually_provided": "Manually provided key Verification Strategy",
    "manually_trusted": "Manually trusted key Verification Strategy",
    "non_verifying": "Non verifying Verification Strategy",
}
KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)


class HostKeyRejected(Exception):
    """The host key did not pass the node's strategy; the message is the log line."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    line: str


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: ``SHA256:`` + unpadded base64 of the key blob's digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def known_hosts_path() -> Path:
    custom = os.environ.get("STEWARD_KNOWN_HOSTS_FILE", "").strip()
    return Path(custom).expanduser() if custom else Path.home() / ".ssh" / "known_hosts"


def parse_provided_key(text: str) -> tuple[str, bytes]:
    """Validate "algorithm base64" as Jenkins does; returns (algorithm, key blob)."""
    parts = (text or "").strip().split()
    if len(parts) < 2:
        raise ValueError("Key should be 2 parts: algorithm and Base 64 encoded key value.")
    algorithm, b64 = parts[0], parts[1]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("The value part of the key should be a Base64 encoded value.") from exc
    try:
        key = paramiko.PKey.from_type_string(algorithm, blob)
    except Exception as exc:  # paramiko raises several types for unknown or bad keys
        raise ValueError(f"Key value does not parse into a valid {algorithm} key") from exc
    if key.get_name() != algorithm and not algorithm.startswith(key.get_name()):
        raise ValueError(f"Key value does not parse into a valid {algorithm} key")
    return algorithm, blob


def verify(node, host: str, port: int, key: paramiko.PKey) -> Verdict:
    """Apply the node's strategy to the presented key. Side effect (manually trusted): the key
    is recorded — trusted on first use unless manual verification is required, else pending."""
    config = node.launcher_config
    strategy = config.get("host_key_strategy") or "non_verifying"
    if strategy == "non_verifying":
        return Verdict(
            True,
            "[SSH] WARNING: SSH Host Keys are not being verified. Man-in-the-middle attacks may "
            "be possible against this connection.",
        )
    if strategy == "manually_provided":
        try:
            algorithm, blob = parse_provided_key(config.get("provided_key", ""))
        except ValueError:
            algorithm, blob = "", b""
        if key.get_name() == algorithm and key.asbytes() == blob:
            return Verdict(
                True,
                "[SSH] SSH host key matched the key required for this connection. Connection "
                "will be allowed.",
            )
        return Verdict(
            False,
            "[SSH] WARNING: The SSH key for this host does not match the key required in the "
            "connection configuration. Connections will be denied until the host key matches "
            "the configuration key.",
        )
    if strategy == "known_hosts":
        return _verify_known_hosts(host, port, key)
    if strategy == "manually_trusted":
        return _verify_trusted(node, key, bool(config.get("require_manual_trust")))
    return Verdict(False, f"[SSH] Unknown host key verification strategy {strategy!r}.")


def _verify_known_hosts(host: str, port: int, key: paramiko.PKey) -> Verdict:
    path = known_hosts_path()
    if not path.exists():
        return Verdict(
            False,
            f"[SSH] No Known Hosts file was found at {path}. Please ensure one is created at "
            "this path and that Steward can read it.",
        )
    try:
        entries = paramiko.HostKeys(str(path))
    except (OSError, paramiko.SSHException) as exc:
        return Verdict(False, f"[SSH] Could not read the Known Hosts file {path}: {exc}")
    lookup_name = host if port == 22 else f"[{host}]:{port}"
    found = entries.lookup(lookup_name)
    if not found:
        return Verdict(
            False,
            "[SSH] WARNING: No entry currently exists in the Known Hosts file for this host. "
            "Connections will be denied until this new host and its associated key is added "
            "to the Known Hosts file.",
        )
    stored = found.get(key.get_name())
    if stored is not None and stored.asbytes() == key.asbytes():
        return Verdict(
            True,
            "[SSH] SSH host key matches key in Known Hosts file. Connection will be allowed.",
        )
    return Verdict(
        False,
        "[SSH] The SSH key presented by the remote host does not match the key saved in the "
        "Known Hosts file against this host. Connections to this host will be denied until "
        "the two keys match.",
    )


def _verify_trusted(node, key: paramiko.PKey, require_manual: bool) -> Verdict:
    from nodes.models import NodeHostKey

    fp = fingerprint(key)
    trusted = NodeHostKey.objects.filter(node=node, trusted=True).first()
    if trusted and trusted.algorithm == key.get_name() and trusted.key_base64 == key.get_base64():
        return Verdict(
            True,
            "[SSH] SSH host key matches key seen previously for this host. Connection "
            "will be allowed.",
        )
    if trusted is None and not require_manual:
        NodeHostKey.objects.filter(node=node, trusted=False).delete()
        NodeHostKey.objects.create(
            node=node,
            algorithm=key.get_name(),
            key_base64=key.get_base64(),
            fingerprint=fp,
            trusted=True,
            trusted_at=timezone.now(),
        )
        return Verdict(
            True,
            f"[SSH] The SSH key with fingerprint {fp} has been automatically trusted for "
            "connections to this machine.",
        )
    NodeHostKey.objects.update_or_create(
        node=node,
        trusted=False,
        defaults={"algorithm": key.get_name(), "key_base64": key.get_base64(), "fingerprint": fp},
    )
    return Verdict(
        False,
        "[SSH] WARNING: The SSH key for this host is not currently trusted. Connections will "
        "be denied until this new key is authorised.",
    )


def preferred_key_types(node) -> list[str] | None:
    """For a manually trusted key, prefer its algorithm during key exchange (like the plugin)."""
    from nodes.models import NodeHostKey

    if node.launcher_config.get("host_key_strategy") != "manually_trusted":
        return None
    trusted = NodeHostKey.objects.filter(node=node, trusted=True).first()
    return [trusted.algorithm] if trusted else None


def trust_pending_key(node, user) -> NodeHostKey | None:  # noqa: F821 - model import below
    """ "Yes" on the Trust SSH Host Key page: the pending key replaces the trusted one."""
    from django.db import transaction

    from nodes.models import NodeHostKey

    with transaction.atomic():
        pending = NodeHostKey.objects.select_for_update().filter(node=node, trusted=False).first()
        if pending is None:
            return None
        NodeHostKey.objects.filter(node=node, trusted=True).delete()
        pending.trusted = True
        pending.trusted_at = timezone.now()
        pending.trusted_by = user
        pending.save()
        return pending


def reject_pending_key(node) -> int:
    from nodes.models import NodeHostKey

    return NodeHostKey.objects.filter(node=node, trusted=False).delete()[0]
