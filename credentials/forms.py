"""Forms for credentials and domains, and the secret field that never renders a secret.

A stored secret renders as "Concealed" with a "Replace" control; posting the form without
touching it keeps the stored value (``KEEP``). Neither the value nor its ciphertext ever
reaches the HTML, not even when a form comes back with errors.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join

from credentials.domains import split_patterns
from credentials.models import (
    GLOBAL_DOMAIN_URL_NAME,
    SCOPE_HELP,
    SYSTEM_STORE,
    Credential,
    Domain,
    Scope,
)

ID_PATTERN = re.compile(r"[a-zA-Z0-9_.-]+")
MAX_SECRET_FILE_BYTES = 1024 * 1024  # 1 MiB, like a generous kubeconfig or keystore


class _Keep:
    """The cleaned value of a secret field left untouched: keep what is stored."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


@dataclass(frozen=True)
class Posted:
    replace: bool
    raw: object = field(repr=False)


class SecretInput(forms.Widget):
    """Password, text, textarea or file input that never renders a value."""

    template_name = "credentials/widgets/secret.html"

    def __init__(self, mode: str = "password", attrs: dict | None = None) -> None:
        super().__init__(attrs)
        self.mode = mode
        self.stored = False
        self.stored_note = ""

    @property
    def needs_multipart_form(self) -> bool:  # type: ignore[override]
        return self.mode == "file"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, None, attrs)
        replace = isinstance(value, Posted) and value.replace
        context["widget"].update(
            value=None,  # never, whatever was posted or stored
            mode=self.mode,
            stored=self.stored,
            stored_note=self.stored_note,
            replace_name=f"{name}__replace",
            replace_checked=replace,
        )
        return context

    def value_from_datadict(self, data, files, name):
        raw = files.get(name) if self.mode == "file" else data.get(name)
        return Posted(replace=data.get(f"{name}__replace") == "on", raw=raw)

    def value_omitted_from_data(self, data, files, name) -> bool:
        return False

    def use_required_attribute(self, initial) -> bool:
        return not self.stored


class SecretField(forms.Field):
    """A secret: cleaned to its new value, to ``KEEP`` (stored and untouched) or ``""``."""

    def __init__(
        self,
        *,
        mode: str = "password",
        max_bytes: int | None = None,
        strip: bool = False,
        max_length: int | None = None,
        **kwargs,
    ) -> None:
        self.mode = mode
        self.max_bytes = max_bytes
        self.max_length = max_length
        self.strip = strip
        self.stored = False
        kwargs.setdefault("widget", SecretInput(mode))
        super().__init__(**kwargs)

    def set_stored(self, stored: bool, note: str = "") -> None:
        self.stored = stored
        self.widget.stored = stored
        self.widget.stored_note = note

    def bound_data(self, data, initial):
        return data

    def has_changed(self, initial, data) -> bool:
        return isinstance(data, Posted) and (data.replace or data.raw not in (None, ""))

    def clean(self, value):
        posted = value if isinstance(value, Posted) else Posted(False, value)
        raw = posted.raw
        if isinstance(raw, str) and self.strip:
            raw = raw.strip()
        empty = (
            raw is None
            or raw == ""
            or (isinstance(raw, UploadedFile) and raw.size == 0 and not raw.name)
        )
        if self.stored and not posted.replace and empty:
            return KEEP
        if empty:
            if self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return ""
        if self.mode == "file":
            if not isinstance(raw, UploadedFile):
                raise ValidationError("No file was uploaded.", code="invalid")
            if self.max_bytes is not None and raw.size > self.max_bytes:
                raise ValidationError(
                    f"The file is too large: {raw.size:,} bytes. The limit is "
                    f"{filesizeformat(self.max_bytes)} ({self.max_bytes:,} bytes).",
                    code="too_large",
                )
            return raw
        value = str(raw)
        if self.max_length is not None and len(value) > self.max_length:
            raise ValidationError(
                f"Ensure this value has at most {self.max_length} characters (it has {len(value)}).",
                code="max_length",
            )
        return value


@dataclass
class CredentialInput:
    """What a valid credential form hands to the services (secrets kept out of repr)."""

    kind: str
    scope: str
    credential_id: str
    description: str
    username: str = ""
    username_secret: bool = False
    details: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict, repr=False)


SCOPE_FIELD_HELP = format_html(
    "<ul>{}</ul>",
    format_html_join(
        "", "<li><strong>{}</strong>: {}</li>", ((Scope(k).label, v) for k, v in SCOPE_HELP.items())
    ),
)


class CredentialForm(forms.Form):
    """Fields every kind has (Scope, ID, Description); a kind subclasses it with its own."""

    kind_key = ""
    secret_field_names: tuple[str, ...] = ()

    scope = forms.ChoiceField(
        label="Scope", choices=Scope.choices, initial=Scope.GLOBAL, help_text=SCOPE_FIELD_HELP
    )
    credential_id = forms.CharField(
        label="ID",
        required=False,
        max_length=255,
        help_text=(
            "An internal unique ID by which these credentials are identified from jobs and "
            "other configuration. Normally left blank, in which case an ID will be generated, "
            "which is fine for jobs created using visual forms. Useful to specify explicitly "
            "when using credentials from scripted configuration."
        ),
    )
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=1000,
        help_text="An optional description to help tell similar credentials apart.",
    )

    def __init__(
        self,
        data=None,
        files=None,
        *,
        instance: Credential | None = None,
        stored_secrets: dict | None = None,
        store: str = SYSTEM_STORE,
        **kwargs,
    ) -> None:
        self.instance = instance
        self.store = instance.store if instance else store
        self._stored = stored_secrets or {}
        initial = kwargs.pop("initial", {}) or {}
        if instance is not None:
            initial.update(self.initial_from(instance))
        super().__init__(data, files, initial=initial, **kwargs)
        if instance is not None:
            self.fields["credential_id"].disabled = True
            self.fields["credential_id"].help_text = "The ID cannot be changed after creation."
        self.prepare_fields()
        for name in self.secret_field_names:
            if name in self.fields and isinstance(self.fields[name], SecretField):
                stored = self._stored.get(name) not in (None, "", b"")
                self.fields[name].set_stored(stored, self.stored_note(name) if stored else "")
        # Jenkins' order: Scope, the kind's own fields, then ID and Description.
        order = ["scope"] + [
            n for n in self.fields if n not in {"scope", "credential_id", "description"}
        ]
        self.order_fields(order + ["credential_id", "description"])

    # --- hooks for kinds --------------------------------------------------------------------

    def initial_from(self, instance: Credential) -> dict:
        """Initial values from the row: non-secret columns only, never a secret."""
        return {
            "scope": instance.scope,
            "credential_id": instance.credential_id,
            "description": instance.description,
        }

    def prepare_fields(self) -> None:
        """Adjust fields once the instance and stored secrets are known."""

    def stored_note(self, name: str) -> str:
        return ""

    def clean_kind(self) -> None:
        """Validate the kind's values together (parse keys, open keystores...)."""

    def kind_values(self) -> tuple[str, bool, dict, dict]:
        """(username, username_secret, details, secrets) for the services."""
        raise NotImplementedError

    # --- shared behaviour -------------------------------------------------------------------

    def secret(self, name: str):
        """The effective value of a secret field: the new one, or the stored one if kept."""
        value = self.cleaned_data.get(name)
        if value is KEEP:
            return self._stored.get(name, "")
        return value

    def secret_posted(self) -> bool:
        """True when the user typed or chose a secret (it is not sent back; they must re-enter)."""
        if not self.is_bound:
            return False
        return any(
            isinstance(f := self.fields.get(n), SecretField) and f.has_changed(None, self[n].data)
            for n in self.secret_field_names
        )

    def clean_credential_id(self) -> str:
        if self.instance is not None:
            return self.instance.credential_id
        value = (self.cleaned_data.get("credential_id") or "").strip()
        if not value:
            return str(uuid.uuid4())
        if not ID_PATTERN.fullmatch(value) or value in {".", ".."}:
            raise ValidationError("Unacceptable characters", code="invalid")
        if Credential.objects.filter(store=self.store, credential_id=value).exists():
            raise ValidationError("This ID is already in use", code="duplicate")
        return value

    def clean(self):
        cleaned = super().clean()
        self.clean_kind()
        return cleaned

    def to_input(self) -> CredentialInput:
        username, username_secret, details, secrets = self.kind_values()
        return CredentialInput(
            kind=self.kind_key,
            scope=self.cleaned_data["scope"],
            credential_id=self.cleaned_data["credential_id"],
            description=self.cleaned_data.get("description", "").strip(),
            username=username,
            username_secret=username_secret,
            details=details,
            secrets=secrets,
        )


TREAT_USERNAME_AS_SECRET_HELP = (
    "By default, usernames are not masked in the build log. You may choose to mask a "
    "credential's username if you consider it to be sensitive information. However, this can "
    "interfere with diagnostics. For example, if the username is a common word it will cause "
    "unrelated occurrences of that word to also be masked. Steward then also stores the "
    "username encrypted and never shows it."
)
BLANK_USERNAME = "Blank username; did you mean to use secret text credentials instead?"


class UsernameFormMixin(forms.Form):
    """Username and "Treat username as secret", shared by the username kinds."""

    username = forms.CharField(
        label="Username", max_length=255, error_messages={"required": BLANK_USERNAME}
    )
    username_secret = forms.BooleanField(
        label="Treat username as secret", required=False, help_text=TREAT_USERNAME_AS_SECRET_HELP
    )

    def initial_from(self, instance: Credential) -> dict:
        initial = super().initial_from(instance)  # type: ignore[misc]
        initial["username_secret"] = instance.username_secret
        if not instance.username_secret:
            initial["username"] = instance.username
        return initial

    def prepare_fields(self) -> None:
        super().prepare_fields()  # type: ignore[misc]
        if self.instance is not None and self.instance.username_secret:  # type: ignore[attr-defined]
            # A secret username is concealed like any other secret.
            self.fields["username"] = SecretField(  # type: ignore[attr-defined]
                label="Username",
                mode="text",
                strip=True,
                max_length=255,
                error_messages={"required": BLANK_USERNAME},
            )

    def clean_username(self):
        value = self.cleaned_data.get("username")  # type: ignore[attr-defined]
        return value.strip() if isinstance(value, str) else value

    def username_values(self) -> tuple[str, bool, dict]:
        """(public username, username_secret, secrets part)."""
        username = self.secret("username")  # type: ignore[attr-defined]
        if self.cleaned_data.get("username_secret"):  # type: ignore[attr-defined]
            return "", True, {"username": username}
        return username, False, {}


# --- domains -----------------------------------------------------------------------------


class DomainForm(forms.Form):
    """Name, description and the four Jenkins specifications (each used when filled in)."""

    name = forms.CharField(
        label="Domain Name",
        max_length=200,
        error_messages={"required": "You must provide a name for the domain"},
    )
    description = forms.CharField(
        label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    hostname_includes = forms.CharField(
        label="Include",
        required=False,
        help_text="Hostnames this domain applies to, separated by commas or spaces; * and ? are wildcards (*.example.com).",
    )
    hostname_excludes = forms.CharField(
        label="Exclude", required=False, help_text="Hostnames excluded even if included above."
    )
    hostname_port_includes = forms.CharField(
        label="Include",
        required=False,
        help_text="host:port patterns, separated by commas or spaces (build*.example.com:22). A pattern without a port means any port.",
    )
    hostname_port_excludes = forms.CharField(label="Exclude", required=False)
    schemes = forms.CharField(
        label="Schemes", required=False, help_text="URI schemes, separated by commas (ssh, https)."
    )
    path_includes = forms.CharField(
        label="Include",
        required=False,
        help_text="URI path patterns, separated by commas; Ant style (/repos/**, /a/*/b).",
    )
    path_excludes = forms.CharField(label="Exclude", required=False)
    path_case_sensitive = forms.BooleanField(label="Case sensitive", required=False, initial=True)

    SPEC_GROUPS = (
        ("hostname", "Hostname", ("hostname_includes", "hostname_excludes")),
        ("hostname_port", "Hostname:port", ("hostname_port_includes", "hostname_port_excludes")),
        ("scheme", "URI scheme", ("schemes",)),
        ("path", "URI path", ("path_includes", "path_excludes", "path_case_sensitive")),
    )

    def __init__(
        self, data=None, *, instance: Domain | None = None, store: str = SYSTEM_STORE, **kwargs
    ) -> None:
        self.instance = instance
        self.store = instance.store if instance else store
        initial = kwargs.pop("initial", {}) or {}
        if instance is not None:
            initial.update(name=instance.name, description=instance.description)
            for spec in instance.specifications:
                kind = spec.get("type")
                if kind == "scheme":
                    initial["schemes"] = spec.get("schemes", "")
                elif kind in {"hostname", "hostname_port", "path"}:
                    initial[f"{kind}_includes"] = spec.get("includes", "")
                    initial[f"{kind}_excludes"] = spec.get("excludes", "")
                    if kind == "path":
                        initial["path_case_sensitive"] = spec.get("case_sensitive", True)
        super().__init__(data, initial=initial, **kwargs)

    def spec_groups(self):
        """(label, bound fields) per specification, for the template."""
        return [(label, [self[n] for n in names]) for _key, label, names in self.SPEC_GROUPS]

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        if not name:
            raise ValidationError("You must provide a name for the domain", code="required")
        if "/" in name or name == GLOBAL_DOMAIN_URL_NAME:
            raise ValidationError("Unacceptable characters", code="invalid")
        others = Domain.objects.filter(store=self.store, name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise ValidationError("A domain with that name already exists", code="duplicate")
        return name

    def clean_schemes(self) -> str:
        schemes = split_patterns(self.cleaned_data.get("schemes", ""))
        for scheme in schemes:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
                raise ValidationError(f"‘{scheme}’ is not a URI scheme.", code="invalid")
        return ", ".join(s.lower() for s in schemes)

    def specifications(self) -> list[dict]:
        d = self.cleaned_data
        specs: list[dict] = []
        for kind in ("hostname", "hostname_port"):
            inc, exc = d.get(f"{kind}_includes", "").strip(), d.get(f"{kind}_excludes", "").strip()
            if inc or exc:
                specs.append({"type": kind, "includes": inc, "excludes": exc})
        if d.get("schemes"):
            specs.append({"type": "scheme", "schemes": d["schemes"]})
        inc, exc = d.get("path_includes", "").strip(), d.get("path_excludes", "").strip()
        if inc or exc:
            specs.append(
                {
                    "type": "path",
                    "includes": inc,
                    "excludes": exc,
                    "case_sensitive": bool(d.get("path_case_sensitive")),
                }
            )
        return specs


class MoveForm(forms.Form):
    destination = forms.ChoiceField(label="Destination")

    def __init__(self, *args, credential: Credential, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        here = credential.domain_or_global.url_name
        choices = [(GLOBAL_DOMAIN_URL_NAME, "Global credentials (unrestricted)")]
        choices += [(d.name, d.name) for d in Domain.objects.filter(store=credential.store)]
        self.fields["destination"].choices = [(v, label) for v, label in choices if v != here]
