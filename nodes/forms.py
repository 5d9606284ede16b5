"""Forms of the Manage Nodes screens, with Jenkins' labels, defaults and messages
(JENKINS.md a2, a3, b1, b2): New Node, the agent configuration with its launcher sub-forms,
the Built-In Node's configuration, offline reasons and Configure Monitors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse

from nodes import hostkeys
from nodes.launchers import launchers
from nodes.launchers.ssh import DEFAULTS as SSH_DEFAULTS
from nodes.models import MonitorSettings, Node
from nodes.names import check_good_name
from nodes.sizes import parse_size

SSH_CREDENTIAL_KINDS = ("sshUserPrivateKey", "usernamePassword")

INVALID_EXECUTORS = "Invalid agent configuration for %(name)s. Invalid number of executors."
BUILTIN_INVALID_EXECUTORS = (
    'Incorrect field "Number of executors". It should be a non-negative number.'
)
RELATIVE_PATH_WARNING = (
    "Are you sure you want to use a relative path for the FS root? Note that relative paths "
    "are resolved against the agent user's home directory (the working directory of the "
    "launch), which may not be what you expect."
)
PYTHON_PATH_WARNING = (
    "The Python path specified contains whitespaces, probably you need to use quotes around "
    "the path."
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Keys of Node.disk_thresholds (the per-node "Disk Space Monitoring Thresholds" property), as
# Jenkins' DiskSpaceMonitorNodeProperty names them; nodes/monitors.py reads the same keys.
DISK_THRESHOLD_FIELDS = (
    ("freeDiskSpaceThreshold", "Free Disk Space Threshold"),
    ("freeDiskSpaceWarningThreshold", "Free Disk Space Warning Threshold"),
    ("freeTempSpaceThreshold", "Free Temp Space Threshold"),
    ("freeTempSpaceWarningThreshold", "Free Temp Space Warning Threshold"),
)


def _size_validator(value: str) -> None:
    """A size ("1GiB", "1.5GB", "100KiB") or, for thresholds, a percentage of the disk ("5%")."""
    value = value.strip()
    if not value:
        return
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            percent = -1
        if not 0 <= percent <= 100:
            raise ValidationError(f"“{value}” is not a percentage between 0% and 100%")
        return
    try:
        parse_size(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def node_name_errors(name: str, *, exclude_pk: int | None = None) -> list[str]:
    """Jenkins' name checks for an agent name, as messages (empty = acceptable)."""
    name = (name or "").strip()
    if not name:
        return ["Name is mandatory"]
    try:
        check_good_name(name)
    except ValidationError as exc:
        return list(exc.messages)
    existing = Node.objects.filter(name=name)
    if exclude_pk is not None:
        existing = existing.exclude(pk=exclude_pk)
    if existing.exists():
        return [f"Agent called ‘{name}’ already exists"]
    return []


def clean_node_name(name: str, *, exclude_pk: int | None = None) -> str:
    errors = node_name_errors(name, exclude_pk=exclude_pk)
    if errors:
        raise ValidationError(errors[0])
    return name.strip()


# --- New Node (step 1) -------------------------------------------------------------------------


class NewNodeForm(forms.Form):
    """``/computer/new``: a name, and Permanent Agent or Copy Existing Node."""

    PERMANENT = "permanent"
    COPY = "copy"

    name = forms.CharField(label="Node name", max_length=200, required=False)
    mode = forms.ChoiceField(
        label="Type",
        choices=[(PERMANENT, "Permanent Agent"), (COPY, "Copy Existing Node")],
        initial=PERMANENT,
        widget=forms.RadioSelect,
    )
    copy_from = forms.CharField(
        label="Copy from",
        required=False,
        widget=forms.TextInput(
            attrs={
                "placeholder": "Type for suggestions",
                "list": "agent-names",
                "autocomplete": "off",
            }
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source: Node | None = None

    def clean_name(self) -> str:
        return clean_node_name(self.cleaned_data.get("name", ""))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("mode") == self.COPY:
            source_name = (data.get("copy_from") or "").strip()
            if not source_name:
                self.add_error("copy_from", "Specify which agent to copy")
            else:
                self.source = Node.objects.filter(name=source_name, is_builtin=False).first()
                if self.source is None:
                    self.add_error("copy_from", f"No such agent: {source_name}")
        return data


# --- launcher sub-forms ------------------------------------------------------------------------


@dataclass
class CredentialOptions:
    """The SSH credentials offered for a host, and every other one with the reason why not."""

    offered: list = field(default_factory=list)
    not_offered: list = field(default_factory=list)  # [(credential, reason)]


def ssh_credential_options(host: str = "", port: int | None = None) -> CredentialOptions:
    """Credentials the SSH launcher may use for ``host`` (System context), with reasons for
    the others (kind, scope, domain), from the credentials app's one look-up."""
    from credentials.services import matching_credentials

    host = (host or "").strip()
    choices = matching_credentials(
        kinds=SSH_CREDENTIAL_KINDS, hostname=host or None, port=port, scheme="ssh"
    )
    return CredentialOptions(list(choices.offered), list(choices.not_offered))


class PortField(forms.CharField):
    """The SSH port with the plugin's exact messages."""

    def to_python(self, value):
        value = super().to_python(value).strip()
        if not value:
            raise ValidationError("The port must be specified")
        try:
            port = int(value)
        except ValueError as exc:
            raise ValidationError("Cannot parse the port") from exc
        if port <= 0:
            raise ValidationError("The port value must be greater than 0")
        if port >= 65536:
            raise ValidationError("The port value must be less than 65536")
        return port


class SSHLauncherForm(forms.Form):
    """ "Launch agents via SSH" (SSH Build Agents plugin's SSHConnector fields)."""

    host = forms.CharField(
        label="Host",
        max_length=255,
        required=False,
        help_text="Agent's Hostname or IP to connect.",
    )
    credentials_id = forms.CharField(label="Credentials", required=False, widget=forms.Select)
    host_key_strategy = forms.ChoiceField(
        label="Host Key Verification Strategy",
        choices=list(hostkeys.STRATEGIES.items()),
        initial=SSH_DEFAULTS["host_key_strategy"],
    )
    provided_key = forms.CharField(
        label="SSH Key",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="The host's public key as “algorithm base64”, e.g. the line in "
        "/etc/ssh/ssh_host_ed25519_key.pub without its comment.",
    )
    require_manual_trust = forms.BooleanField(
        label="Require manual verification of initial connection", required=False
    )
    port = PortField(label="Port", initial=SSH_DEFAULTS["port"])
    python_path = forms.CharField(
        label="Python Path",
        required=False,
        help_text="Empty: python3 from the PATH of the agent user. The agent needs Python 3.8 "
        "or later.",
    )
    prefix_start_cmd = forms.CharField(
        label="Prefix Start Agent Command",
        required=False,
        help_text="Prepended to the start command without a separator, e.g. "
        "“source ~/.profile && ”.",
    )
    suffix_start_cmd = forms.CharField(
        label="Suffix Start Agent Command",
        required=False,
        help_text="Appended to the start command without a separator.",
    )
    launch_timeout = forms.IntegerField(
        label="Connection Timeout in Seconds", min_value=1, initial=SSH_DEFAULTS["launch_timeout"]
    )
    max_retries = forms.IntegerField(
        label="Maximum Number of Retries",
        min_value=0,
        initial=SSH_DEFAULTS["max_retries"],
        help_text="0 disables retries.",
    )
    retry_wait = forms.IntegerField(
        label="Seconds To Wait Between Retries", min_value=0, initial=SSH_DEFAULTS["retry_wait"]
    )
    tcp_nodelay = forms.BooleanField(
        label="Use TCP_NODELAY flag on the SSH connection",
        required=False,
        initial=SSH_DEFAULTS["tcp_nodelay"],
    )

    ADVANCED = (
        "port",
        "python_path",
        "prefix_start_cmd",
        "suffix_start_cmd",
        "launch_timeout",
        "max_retries",
        "retry_wait",
        "tcp_nodelay",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        host = self.data.get(self.add_prefix("host")) if self.is_bound else None
        if host is None:
            host = self.initial.get("host", "")
        self.credential_options = ssh_credential_options(host)
        self._offered_ids = {c.credential_id for c in self.credential_options.offered}
        choices = [("", "- none -")] + [
            (c.credential_id, f"{c.display_name} [{c.kind_name}]")
            for c in self.credential_options.offered
        ]
        # A stored or posted ID that is not offered stays visible, so saving says why.
        current = (
            self.data.get(self.add_prefix("credentials_id"))
            if self.is_bound
            else self.initial.get("credentials_id")
        )
        if current and current not in self._offered_ids:
            choices.append((current, f"{current} (not available here)"))
        self.fields["credentials_id"].widget.choices = choices
        # Typing a host asks again which credentials apply to it (domains are per host).
        self.fields["host"].widget.attrs.update(
            {
                "hx-get": reverse("nodes:ssh-credentials"),
                "hx-trigger": "change, keyup changed delay:600ms",
                "hx-target": "#ssh-credentials",
                "hx-swap": "outerHTML",
                "hx-include": f"[name='{self.add_prefix('host')}'], "
                f"[name='{self.add_prefix('credentials_id')}']",
                "autocomplete": "off",
            }
        )
        self.warnings: dict[str, list[str]] = {}

    @property
    def basic_fields(self):
        return [self[name] for name in self.fields if name not in self.ADVANCED]

    @property
    def advanced_fields(self):
        return [self[name] for name in self.ADVANCED]

    def clean_host(self) -> str:
        host = self.cleaned_data.get("host", "").strip()
        if not host:
            raise ValidationError("The Host must be specified")
        return host

    def clean_credentials_id(self) -> str:
        value = (self.cleaned_data.get("credentials_id") or "").strip()
        if value and value not in self._offered_ids:
            reason = self._reason_for(value)
            raise ValidationError(
                "The selected credentials cannot be found" + (f": {reason}" if reason else "")
            )
        return value

    def _reason_for(self, credential_id: str) -> str | None:
        return next(
            (r for c, r in self.credential_options.not_offered if c.credential_id == credential_id),
            None,
        )

    def clean_python_path(self) -> str:
        value = self.cleaned_data.get("python_path", "").strip()
        if re.search(r"\s", value) and not (value[:1] in "\"'" and value[-1:] == value[:1]):
            self.warnings.setdefault("python_path", []).append(PYTHON_PATH_WARNING)
        return value

    def clean(self) -> dict:
        data = super().clean()
        strategy = data.get("host_key_strategy")
        if strategy == "manually_provided":
            key = (data.get("provided_key") or "").strip()
            try:
                hostkeys.parse_provided_key(key)
            except ValueError as exc:
                self.add_error("provided_key", str(exc))
            else:
                data["provided_key"] = " ".join(key.split()[:2])
        return data

    def config(self) -> dict:
        """Node.launcher_config for the SSH launcher (the keys nodes/launchers/ssh.py reads)."""
        data = self.cleaned_data
        return {
            "host": data["host"],
            "port": data["port"],
            "credentials_id": data.get("credentials_id", ""),
            "host_key_strategy": data["host_key_strategy"],
            "provided_key": data.get("provided_key", "")
            if data["host_key_strategy"] == "manually_provided"
            else "",
            "require_manual_trust": bool(data.get("require_manual_trust"))
            if data["host_key_strategy"] == "manually_trusted"
            else False,
            "python_path": data.get("python_path", ""),
            "prefix_start_cmd": data.get("prefix_start_cmd", ""),
            "suffix_start_cmd": data.get("suffix_start_cmd", ""),
            "launch_timeout": data["launch_timeout"],
            "max_retries": data["max_retries"],
            "retry_wait": data["retry_wait"],
            "tcp_nodelay": bool(data.get("tcp_nodelay")),
        }

    @classmethod
    def initial_from(cls, config: dict) -> dict:
        merged = {**SSH_DEFAULTS, **(config or {})}
        return {name: merged.get(name, cls.base_fields[name].initial) for name in cls.base_fields}


class CommandLauncherForm(forms.Form):
    """ "Launch agent via execution of command on the controller"."""

    command = forms.CharField(
        label="Launch command",
        required=False,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text=(
            "A command run on the controller whose stdin and stdout reach the agent program; "
            "Steward appends the agent's arguments. Examples: "
            "“ssh host python3 agent.pyz”, “docker exec -i c python3 /agent.pyz”. "
            "The program can be downloaded from /jnlpJars/agent.pyz. No shell runs the "
            "command: it is split into words like a shell would."
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warnings: dict[str, list[str]] = {}

    def clean_command(self) -> str:
        import shlex

        command = self.cleaned_data.get("command", "").strip()
        if not command:
            raise ValidationError("No launch command specified")
        try:
            shlex.split(command)
        except ValueError as exc:
            raise ValidationError(f"The launch command cannot be parsed: {exc}") from exc
        return command

    def config(self) -> dict:
        return {"command": self.cleaned_data["command"]}

    @classmethod
    def initial_from(cls, config: dict) -> dict:
        return {"command": (config or {}).get("command", "")}


LAUNCHER_FORMS: dict[str, type[forms.Form]] = {
    "ssh": SSHLauncherForm,
    "command": CommandLauncherForm,
}


def launcher_choices() -> list[tuple[str, str]]:
    """The Launch method select: every registered launcher an agent may use."""
    registry = launchers()
    return [(kind, registry[kind].display_name) for kind in LAUNCHER_FORMS if kind in registry]


# --- the agent configuration (step 2 and /computer/<name>/configure) ----------------------------


class NodeConfigForm(forms.ModelForm):
    """A Permanent Agent's configuration. ``launcher_forms`` holds one sub-form per launch
    method (prefix = its kind); only the chosen one is validated and stored."""

    class Meta:
        model = Node
        fields = [
            "name",
            "description",
            "num_executors",
            "remote_fs",
            "label_string",
            "mode",
            "launcher",
            "retention",
            "in_demand_delay",
            "idle_delay",
        ]
        labels = {"name": "Name", "description": "Description"}
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "mode": forms.RadioSelect,
            "retention": forms.RadioSelect,
        }
        help_texts = {
            "num_executors": "The maximum number of concurrent builds Steward may run on this "
            "agent.",
            "remote_fs": "An agent needs a directory dedicated to Steward: an absolute path on "
            "the agent, such as /var/steward or /home/steward/agent.",
            "label_string": "Labels (aliases) separated by spaces, used to group agents; quote a "
            "label that contains spaces. The node's name is always a label too.",
            "in_demand_delay": "Minutes that builds must wait in the queue before this agent is "
            "launched.",
            "idle_delay": "Minutes this agent may stay idle before it is taken offline.",
        }

    num_executors = forms.CharField(
        label="Number of executors",
        initial=1,
        max_length=6,
        required=False,  # empty gets Jenkins' "Invalid number of executors" from clean_
    )
    remote_fs = forms.CharField(label="Remote root directory", max_length=1000, required=False)
    launcher = forms.ChoiceField(label="Launch method")
    in_demand_delay = forms.IntegerField(label="In demand delay", min_value=0, initial=0)
    idle_delay = forms.IntegerField(label="Idle delay", min_value=1, initial=1)

    def __init__(self, *args, **kwargs) -> None:
        data = args[0] if args else kwargs.get("data")
        super().__init__(*args, **kwargs)
        self.fields["launcher"].choices = launcher_choices()
        self.fields["num_executors"].widget = forms.NumberInput(attrs={"min": 1})
        self.fields["mode"].choices = Node.Mode.choices
        self.fields["retention"].choices = Node.Retention.choices
        self.fields["name"].required = False  # "Name is mandatory" comes from clean_name
        node = self.instance
        config = node.launcher_config if node.pk else {}
        self.launcher_forms: dict[str, forms.Form] = {}
        for kind, form_class in LAUNCHER_FORMS.items():
            initial = form_class.initial_from(config if node.launcher == kind else {})
            self.launcher_forms[kind] = form_class(data, prefix=kind, initial=initial)
        self.env_rows = self._env_rows(data)
        self.env_errors: list[str] = []
        thresholds = node.disk_thresholds or {}
        self.threshold_fields = []
        for key, label in DISK_THRESHOLD_FIELDS:
            self.fields[key] = forms.CharField(
                label=label,
                required=False,
                max_length=32,
                initial=thresholds.get(key, ""),
                validators=[_size_validator],
            )
        self.warnings: dict[str, list[str]] = {}

    def _env_rows(self, data) -> list[tuple[str, str]]:
        if data is not None:
            names = data.getlist("env_name") if hasattr(data, "getlist") else []
            values = data.getlist("env_value") if hasattr(data, "getlist") else []
            rows = list(zip(names, values + [""] * (len(names) - len(values)), strict=False))
            return [(n, v) for n, v in rows if n.strip() or v.strip()]
        return [(row.get("name", ""), row.get("value", "")) for row in self.instance.env_vars or []]

    @property
    def threshold_bound_fields(self):
        return [self[key] for key, _ in DISK_THRESHOLD_FIELDS]

    @property
    def selected_launcher(self) -> str:
        if self.is_bound:
            return self.data.get("launcher") or "ssh"
        return self.instance.launcher if self.instance.pk else "ssh"

    def clean_name(self) -> str:
        return clean_node_name(self.cleaned_data.get("name", ""), exclude_pk=self.instance.pk)

    def clean_num_executors(self) -> int:
        raw = str(self.cleaned_data.get("num_executors", "")).strip()
        name = (self.data.get("name") or self.instance.name or "").strip()
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValidationError(INVALID_EXECUTORS, params={"name": name})
        return value

    def clean_remote_fs(self) -> str:
        value = self.cleaned_data.get("remote_fs", "").strip()
        if not value:
            raise ValidationError("Remote directory is mandatory")
        if not (
            value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value) or value.startswith("\\\\")
        ):
            self.warnings.setdefault("remote_fs", []).append(RELATIVE_PATH_WARNING)
        return value

    def clean_label_string(self) -> str:
        return " ".join(self.cleaned_data.get("label_string", "").split())

    def clean(self) -> dict:
        data = super().clean()
        launcher = data.get("launcher")
        sub = self.launcher_forms.get(launcher)
        if sub is not None and not sub.is_valid():
            self.add_error(None, "The launch method's settings have errors: see below.")
        elif sub is not None:
            for name, messages in sub.warnings.items():
                self.warnings.setdefault(f"{launcher}-{name}", []).extend(messages)
        env = []
        seen = set()
        for name, value in self.env_rows:
            name = name.strip()
            if not name:
                self.env_errors.append("Name is mandatory")
            elif not ENV_NAME.match(name):
                self.env_errors.append(f"‘{name}’ is not a valid environment variable name")
            elif name in seen:
                self.env_errors.append(f"The environment variable ‘{name}’ is defined twice")
            else:
                seen.add(name)
                env.append({"name": name, "value": value})
        if self.env_errors:
            self.add_error(None, "Environment variables: " + "; ".join(self.env_errors))
        data["env_vars"] = env
        thresholds = {}
        for key, _ in DISK_THRESHOLD_FIELDS:
            value = (data.get(key) or "").strip()
            if value:
                thresholds[key] = value
        data["disk_thresholds"] = thresholds
        return data

    @property
    def launcher_form(self) -> forms.Form | None:
        return self.launcher_forms.get(self.cleaned_data.get("launcher", ""))

    def all_warnings(self) -> list[str]:
        return [m for messages in self.warnings.values() for m in messages]

    def save(self, commit: bool = True) -> Node:
        node = super().save(commit=False)
        node.launcher_config = self.launcher_form.config() if self.launcher_form else {}
        node.env_vars = self.cleaned_data["env_vars"]
        node.disk_thresholds = self.cleaned_data["disk_thresholds"]
        if commit:
            node.save()
        return node


class BuiltinNodeForm(forms.ModelForm):
    """The Built-In Node's configure page: Number of executors (0 allowed), Labels, Usage."""

    class Meta:
        model = Node
        fields = ["num_executors", "label_string", "mode"]
        widgets = {"mode": forms.RadioSelect}
        help_texts = NodeConfigForm.Meta.help_texts

    num_executors = forms.CharField(
        label="Number of executors",
        max_length=6,
        error_messages={"required": BUILTIN_INVALID_EXECUTORS},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["num_executors"].widget = forms.NumberInput(attrs={"min": 0})
        self.fields["mode"].choices = Node.Mode.choices
        self.warnings: dict[str, list[str]] = {}

    def clean_num_executors(self) -> int:
        raw = str(self.cleaned_data.get("num_executors", "")).strip()
        try:
            value = int(raw)
        except ValueError as exc:
            raise ValidationError(BUILTIN_INVALID_EXECUTORS) from exc
        if value < 0:
            raise ValidationError(BUILTIN_INVALID_EXECUTORS)
        return value

    def clean_label_string(self) -> str:
        return " ".join(self.cleaned_data.get("label_string", "").split())

    def all_warnings(self) -> list[str]:
        return []


# --- small forms of the node page ----------------------------------------------------------------


class OfflineReasonForm(forms.Form):
    offlineMessage = forms.CharField(  # noqa: N815 - Jenkins' parameter name
        label="Reason", required=False, widget=forms.Textarea(attrs={"rows": 3})
    )


class MonitorSettingsForm(forms.ModelForm):
    """Configure Monitors: the global disk/temp thresholds and "Don't mark agents temporarily
    offline" per monitor that can take nodes offline."""

    class Meta:
        model = MonitorSettings
        fields = [
            "interval_seconds",
            "free_disk_threshold",
            "free_disk_warning",
            "disk_ignored",
            "free_temp_threshold",
            "free_temp_warning",
            "temp_ignored",
            "response_ignored",
        ]
        labels = {
            "interval_seconds": "Monitoring interval in seconds",
            "free_disk_threshold": "Free Space Threshold",
            "free_disk_warning": "Free Space Warning Threshold",
            "free_temp_threshold": "Free Space Threshold",
            "free_temp_warning": "Free Space Warning Threshold",
        }
        help_texts = {
            "free_disk_threshold": "Sizes like 1GiB, 1.5GB, 100KiB. A node whose free space is "
            "at or below the threshold is marked temporarily offline; 0 disables it.",
            "free_disk_warning": "At or below this the column is shown as a warning.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["interval_seconds"].min_value = 10
        self.fields["interval_seconds"].widget.attrs["min"] = 10
        for name in (
            "free_disk_threshold",
            "free_disk_warning",
            "free_temp_threshold",
            "free_temp_warning",
        ):
            self.fields[name].validators.append(_size_validator)

    def clean_interval_seconds(self) -> int:
        value = self.cleaned_data["interval_seconds"]
        if value < 10:
            raise ValidationError("The interval must be at least 10 seconds")
        return value

    def clean(self) -> dict:
        data = super().clean()
        for low, high in (
            ("free_disk_threshold", "free_disk_warning"),
            ("free_temp_threshold", "free_temp_warning"),
        ):
            low_value, high_value = data.get(low) or "", data.get(high) or ""
            if "%" in low_value + high_value:
                continue
            try:
                if parse_size(high_value) < parse_size(low_value):
                    self.add_error(high, "The warning threshold must not be below the threshold")
            except ValueError:
                pass
        return data
