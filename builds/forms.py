"""Forms of the job screens: New Item, Configure (with its "Execute shell" build steps), Rename,
and the few job changes those screens make (create or copy, save, rename, enable/disable)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse

from builds import services
from builds.labels import (
    LabelExpressionError,
    label_counts,
    node_labels,
    parse_label_expression,
    validate_label_expression,
)
from builds.models import Build, Job, QueueItem
from nodes.names import check_good_name

FREESTYLE_BLURB = (
    "This is the central feature of Steward. Steward will build your project, combining any "
    "SCM with any build system, and this can be even used for something other than software "
    "build."
)
MAX_STEPS = 50
JOB_EXISTS = "A job already exists with the name ‘{0}’"
EMPTY_NAME = "This field cannot be empty, please enter a valid name"
SAME_NAME = "The new name is the same as the current name."
RENAME_WHILE_BUILDING = "Unable to rename a job while it is building."
EXIT_CODE_ZERO = "Exit code zero is ignored and does not make the build unstable"
EXIT_CODE_RANGE = "Invalid exit code value: {0}. Check help section."


# --- names ------------------------------------------------------------------------------------


def job_name_errors(name: str, *, exclude_pk: int | None = None) -> list[str]:
    """Jenkins' checks of a job name (``checkJobName``), as messages; empty = acceptable."""
    name = (name or "").strip()
    if not name:
        return [EMPTY_NAME]
    try:
        check_good_name(name)
    except ValidationError as exc:
        return list(exc.messages)
    if len(name) > Job._meta.get_field("name").max_length:
        return [f"A name may have at most {Job._meta.get_field('name').max_length} characters"]
    existing = Job.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        existing = existing.exclude(pk=exclude_pk)
    if existing.exists():
        # Jenkins compares names case-insensitively: "App" and "app" would share a workspace.
        return [JOB_EXISTS.format(name)]
    return []


def _clean_job_name(name: str, *, exclude_pk: int | None = None) -> str:
    errors = job_name_errors(name, exclude_pk=exclude_pk)
    if errors:
        raise ValidationError(errors[0])
    return name.strip()


# --- New Item ---------------------------------------------------------------------------------


class NewJobForm(forms.Form):
    """``/newJob``: an item name, and Freestyle project or Copy from an existing job."""

    FREESTYLE = "freestyle"
    COPY = "copy"

    name = forms.CharField(label="Enter an item name", max_length=200, required=False)
    mode = forms.ChoiceField(
        label="Type",
        choices=[(FREESTYLE, "Freestyle project"), (COPY, "Copy from")],
        initial=FREESTYLE,
        widget=forms.RadioSelect,
    )
    copy_from = forms.CharField(
        label="Copy from",
        required=False,
        widget=forms.TextInput(attrs={"list": "job-names", "autocomplete": "off"}),
        help_text="If you want to create a new item from other existing, you can use this option.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source: Job | None = None

    def clean_name(self) -> str:
        return _clean_job_name(self.cleaned_data.get("name", ""))

    def clean(self) -> dict:
        data = super().clean()
        source_name = (data.get("copy_from") or "").strip()
        if data.get("mode") == self.COPY:
            if not source_name:
                self.add_error("copy_from", "Specify which job to copy")
            else:
                self.source = Job.objects.filter(name=source_name).first()
                if self.source is None:
                    self.add_error("copy_from", f"No such job: {source_name}")
        return data

    def save(self) -> Job:
        """Create the job; a copy takes every setting of its source, but no builds."""
        name = self.cleaned_data["name"]
        source = self.source
        if source is None:
            return Job.objects.create(name=name)
        return Job.objects.create(
            name=name,
            description=source.description,
            disabled=source.disabled,
            label_expression=source.label_expression,
            concurrent_build=source.concurrent_build,
            quiet_period=source.quiet_period,
            steps=[dict(step) for step in source.steps],
            stuck_timeout_minutes=source.stuck_timeout_minutes,
            delete_workspace=source.delete_workspace,
            timestamps=source.timestamps,
        )


# --- label expressions --------------------------------------------------------------------------


def node_label_sets() -> list[frozenset[str]]:
    """Every node's labels (its Labels field and its self label), for the label checks."""
    from nodes.models import Node

    return [
        node_labels(name, label_string, is_builtin=is_builtin)
        for name, label_string, is_builtin in Node.objects.values_list(
            "name", "label_string", "is_builtin"
        )
    ]


def check_label_expression(text: str) -> list[tuple[str, str]]:
    """Jenkins' live checks of the Label Expression field against the nodes there are now."""
    nodes = node_label_sets()
    return validate_label_expression(text, label_counts(nodes), nodes=nodes)


# --- Configure ----------------------------------------------------------------------------------


class JobConfigForm(forms.ModelForm):
    """``/job/<name>/configure``: the freestyle project's settings (the build steps are a
    formset of StepForm beside it)."""

    restrict = forms.BooleanField(label="Restrict where this project can be run", required=False)
    abort_stuck = forms.BooleanField(label="Abort the build if it's stuck", required=False)

    class Meta:
        model = Job
        fields = [
            "description",
            "restrict",
            "label_expression",
            "concurrent_build",
            "quiet_period",
            "abort_stuck",
            "stuck_timeout_minutes",
            "delete_workspace",
            "timestamps",
        ]
        labels = {
            "quiet_period": "Quiet period",
            "stuck_timeout_minutes": "Timeout minutes",
        }
        help_texts = {
            "quiet_period": "Number of seconds a new build waits in the queue before it starts, "
            "so that several requests in a row fold into one build. Empty: the default (5 s).",
            "label_expression": "The nodes whose labels satisfy this expression may run its "
            "builds, e.g. “linux && !arm”.",
            "stuck_timeout_minutes": "The build is aborted when it runs longer than this.",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 4}),
            "label_expression": forms.TextInput(
                attrs={"autocomplete": "off", "spellcheck": "false"}
            ),
            "quiet_period": forms.NumberInput(attrs={"min": 0, "placeholder": "5"}),
            "stuck_timeout_minutes": forms.NumberInput(attrs={"min": 1}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        job = self.instance
        if not self.is_bound:
            self.initial["restrict"] = bool(job.label_expression)
            self.initial["abort_stuck"] = bool(job.stuck_timeout_minutes)
        self.fields["description"].widget.attrs["placeholder"] = "Plain text"
        # Checked live while typing, against the nodes there are now.
        self.fields["label_expression"].widget.attrs.update(
            {
                "hx-get": reverse("builds:check-label"),
                "hx-trigger": "input changed delay:300ms",
                "hx-target": "#label-check",
                "hx-swap": "innerHTML",
            }
        )

    def clean_label_expression(self) -> str:
        text = (self.cleaned_data.get("label_expression") or "").strip()
        try:
            parse_label_expression(text)
        except LabelExpressionError as error:
            raise ValidationError(str(error)) from None
        return text

    def clean_stuck_timeout_minutes(self) -> int | None:
        value = self.cleaned_data.get("stuck_timeout_minutes")
        if value is not None and value < 1:
            raise ValidationError("Timeout minutes must be at least 1")
        return value

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("restrict"):
            data["label_expression"] = ""
        elif not data.get("label_expression") and "label_expression" not in self.errors:
            self.add_error("label_expression", "Specify a label expression")
        if not data.get("abort_stuck"):
            data["stuck_timeout_minutes"] = None
        elif (
            data.get("stuck_timeout_minutes") is None and "stuck_timeout_minutes" not in self.errors
        ):
            self.add_error("stuck_timeout_minutes", "Specify the timeout in minutes")
        return data


class StepForm(forms.Form):
    """One "Execute shell" build step."""

    command = forms.CharField(
        label="Command",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        error_messages={"required": "Specify the command to run"},
        strip=False,
    )
    unstable_return = forms.IntegerField(
        label="Exit code to set build unstable",
        required=False,
        help_text="If set, the shell exit code that will be interpreted as an unstable build "
        "result (1 to 255).",
        widget=forms.NumberInput(attrs={"min": 1, "max": 255}),
    )

    def clean_command(self) -> str:
        command = self.cleaned_data.get("command", "")
        if not command.strip():
            raise ValidationError("Specify the command to run")
        # Browsers send CRLF from a textarea; /bin/sh would see a stray \r on every line.
        return command.replace("\r\n", "\n")

    def clean_unstable_return(self) -> int | None:
        value = self.cleaned_data.get("unstable_return")
        if value is None:
            return None
        if value == 0:
            raise ValidationError(EXIT_CODE_ZERO)
        if not 1 <= value <= 255:
            raise ValidationError(EXIT_CODE_RANGE.format(value))
        return value


StepFormSet = forms.formset_factory(
    StepForm, extra=0, can_delete=True, max_num=MAX_STEPS, validate_max=True
)


def step_formset(job: Job, data=None) -> forms.BaseFormSet:
    initial = [
        {"command": step.get("command", ""), "unstable_return": step.get("unstable_return")}
        for step in job.steps
        if step.get("type", "shell") == "shell"
    ]
    return StepFormSet(data, initial=initial, prefix="steps")


def steps_from(formset: forms.BaseFormSet) -> list[dict]:
    return [
        {
            "type": "shell",
            "command": form.cleaned_data["command"],
            "unstable_return": form.cleaned_data.get("unstable_return"),
        }
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]


def save_configuration(form: JobConfigForm, formset: forms.BaseFormSet) -> Job:
    job = form.save(commit=False)
    job.steps = steps_from(formset)
    job.save()
    return job


# --- Rename, Enable/Disable -------------------------------------------------------------------


class RenameForm(forms.Form):
    """``/job/<name>/confirm-rename``."""

    new_name = forms.CharField(label="New Name", max_length=200, required=False)

    def __init__(self, *args, job: Job, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job = job
        if not self.is_bound:
            self.initial["new_name"] = job.name

    def clean_new_name(self) -> str:
        name = (self.cleaned_data.get("new_name") or "").strip()
        if name == self.job.name:
            raise ValidationError(SAME_NAME)
        name = _clean_job_name(name, exclude_pk=self.job.pk)
        if Build.objects.filter(
            job=self.job, status__in=[Build.Status.PENDING, Build.Status.RUNNING]
        ).exists():
            raise ValidationError(RENAME_WHILE_BUILDING)
        return name

    def save(self) -> Job:
        with transaction.atomic():
            Job.objects.filter(pk=self.job.pk).update(name=self.cleaned_data["new_name"])
        self.job.refresh_from_db()
        services.announce(services.QUEUE_GROUP, event="renamed")
        return self.job


def set_disabled(job: Job, disabled: bool) -> None:
    """Disable or enable a project. Like Jenkins, disabling also cancels its queued build."""
    Job.objects.filter(pk=job.pk).update(disabled=disabled)
    job.disabled = disabled
    if disabled:
        for item_id in QueueItem.objects.filter(
            job=job, state__in=QueueItem.LIVE_STATES
        ).values_list("pk", flat=True):
            services.cancel_item(item_id)
    services.announce(services.QUEUE_GROUP, event="disabled" if disabled else "enabled")
