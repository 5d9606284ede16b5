"""Build parameters ("This project is parameterized"): the four kinds Jenkins has built in —
String, Boolean, Choice and Password — their values for one request, and where the secret ones
live.

A job keeps its definitions in ``Job.parameters`` (see the model) and the default of each
Password parameter encrypted in ``Job.encrypted_secrets``. A request's values are a
``ParameterValues``: non-secret values in plain JSON, password values encrypted in
``encrypted_parameters``, and a keyed digest of all of them so that two requests with the same
values fold into one queue item while different values make a new one (JENKINS.md d3).
Only ``secret_values`` and ``job_secrets`` decrypt; builds ask them when they start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from credentials import crypto

STRING = "string"
BOOLEAN = "boolean"
CHOICE = "choice"
PASSWORD = "password"
KINDS = {
    STRING: "String Parameter",
    BOOLEAN: "Boolean Parameter",
    CHOICE: "Choice Parameter",
    PASSWORD: "Password Parameter",
}
# Jenkins' _class of each definition and value (the remote API reports them).
DEFINITION_CLASS = {
    STRING: "hudson.model.StringParameterDefinition",
    BOOLEAN: "hudson.model.BooleanParameterDefinition",
    CHOICE: "hudson.model.ChoiceParameterDefinition",
    PASSWORD: "hudson.model.PasswordParameterDefinition",
}
VALUE_CLASS = {
    STRING: "hudson.model.StringParameterValue",
    BOOLEAN: "hudson.model.BooleanParameterValue",
    CHOICE: "hudson.model.StringParameterValue",
    PASSWORD: "hudson.model.PasswordParameterValue",
}

JOB_SECRETS_PURPOSE = "builds.Job.secrets"
QUEUE_PURPOSE = "builds.QueueItem.parameters"
BUILD_PURPOSE = "builds.Build.parameters"

# An environment variable name (what a parameter becomes in the build).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NAME_ERROR = (
    "‘{0}’ is not a valid parameter name: use letters, digits and underscores, not starting "
    "with a digit"
)


class ParameterError(ValueError):
    """A value that the job's definition does not accept; the message names the parameter."""


@dataclass
class ParameterValues:
    """The values of one build request, ready to store on a queue item or a build."""

    public: list[dict] = field(default_factory=list)  # [{"name", "value"} | {"name", "secret"}]
    encrypted: str = ""
    key: str = ""

    @property
    def empty(self) -> bool:
        return not self.public


def definitions(job) -> list[dict]:
    return [dict(d) for d in (job.parameters or [])]


def is_parameterized(job) -> bool:
    return bool(job.parameters)


# --- secrets ----------------------------------------------------------------------------------


@sensitive_variables()
def job_secrets(job) -> dict[str, str]:
    """The default values of the job's Password parameters, decrypted."""
    if not job.encrypted_secrets:
        return {}
    return json.loads(crypto.decrypt(job.encrypted_secrets, purpose=JOB_SECRETS_PURPOSE))


@sensitive_variables()
def encrypt_job_secrets(values: Mapping[str, str]) -> str:
    if not values:
        return ""
    return crypto.encrypt(json.dumps(dict(values)).encode(), purpose=JOB_SECRETS_PURPOSE)


@sensitive_variables()
def secret_values(row, purpose: str) -> dict[str, str]:
    """The password values of a queue item or build (``purpose``: QUEUE_ or BUILD_PURPOSE)."""
    if not row.encrypted_parameters:
        return {}
    return json.loads(crypto.decrypt(row.encrypted_parameters, purpose=purpose))


@sensitive_variables()
def reencrypt(encrypted: str, source: str, target: str) -> str:
    """The same values under another column's purpose (a queue item's values go to its build)."""
    if not encrypted:
        return ""
    return crypto.encrypt(crypto.decrypt(encrypted, purpose=source), purpose=target)


# --- values of one request ----------------------------------------------------------------------


def _boolean(text) -> bool:
    if isinstance(text, bool):
        return text
    return str(text).strip().lower() in ("true", "on", "1", "yes")


def default_value(definition: dict, secrets: Mapping[str, str]):
    kind = definition["type"]
    if kind == BOOLEAN:
        return bool(definition.get("default"))
    if kind == CHOICE:
        choices = definition.get("choices") or [""]
        return choices[0]
    if kind == PASSWORD:
        return secrets.get(definition["name"], "")
    return str(definition.get("default") or "")


def _coerce(definition: dict, raw) -> str | bool:
    kind = definition["type"]
    name = definition["name"]
    if kind == BOOLEAN:
        return _boolean(raw)
    value = "" if raw is None else str(raw)
    if kind == CHOICE:
        choices = definition.get("choices") or []
        if value not in choices:
            raise ParameterError(
                f"Illegal choice for parameter {name}: {value}"
                if choices
                else f"{name}: no choices"
            )
        return value
    if kind == STRING and definition.get("trim"):
        return value.strip()
    return value


@sensitive_variables()
def values_for(job, supplied: Mapping[str, object] | None = None, *, boolean_form=False):
    """The values of a request: ``supplied`` (a form or query) over the job's defaults.

    Only parameters the job defines are read; anything else supplied is ignored, as Jenkins
    does. With ``boolean_form`` a Boolean parameter missing from ``supplied`` is false (an
    unticked checkbox), otherwise it takes its default. Raises ParameterError for a value the
    definition refuses (a choice that is not offered).
    """
    supplied = supplied or {}
    defs = definitions(job)
    if not defs:
        return ParameterValues()
    secrets = job_secrets(job) if any(d["type"] == PASSWORD for d in defs) else {}
    public: list[dict] = []
    hidden: dict[str, str] = {}
    for definition in defs:
        name = definition["name"]
        if name in supplied:
            value = _coerce(definition, supplied[name])
        elif definition["type"] == BOOLEAN and boolean_form:
            value = False
        else:
            value = default_value(definition, secrets)
        if definition["type"] == PASSWORD:
            hidden[name] = str(value)
            public.append({"name": name, "secret": True})
        else:
            public.append({"name": name, "value": value})
    return ParameterValues(
        public=public,
        encrypted=crypto.encrypt(json.dumps(hidden).encode(), purpose=QUEUE_PURPOSE)
        if hidden
        else "",
        key=_digest(public, hidden),
    )


@sensitive_variables()
def _digest(public: list[dict], hidden: Mapping[str, str]) -> str:
    canonical = json.dumps(
        [[p["name"], hidden.get(p["name"]) if p.get("secret") else p.get("value")] for p in public],
        separators=(",", ":"),
        sort_keys=True,
    )
    key = hashlib.sha256(("steward-parameters:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


# --- what a build sees ----------------------------------------------------------------------


@sensitive_variables()
def environment(build) -> dict[str, str]:
    """The build's parameters as environment variables (booleans as "true"/"false")."""
    if not build.parameters:
        return {}
    hidden = secret_values(build, BUILD_PURPOSE)
    env: dict[str, str] = {}
    for entry in build.parameters:
        name = entry["name"]
        if entry.get("secret"):
            env[name] = hidden.get(name, "")
        else:
            value = entry.get("value")
            env[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def secret_names(build) -> list[str]:
    return [p["name"] for p in build.parameters or [] if p.get("secret")]


def shown(entries: list[dict]) -> list[dict]:
    """Rows for the Parameters page of a build or queue item: a password shows as concealed."""
    rows = []
    for entry in entries or []:
        if entry.get("secret"):
            rows.append({"name": entry["name"], "value": "", "secret": True})
        else:
            value = entry.get("value")
            if isinstance(value, bool):
                value = "true" if value else "false"
            rows.append({"name": entry["name"], "value": value, "secret": False})
    return rows
