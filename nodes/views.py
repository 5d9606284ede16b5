"""The Manage Nodes screens (JENKINS.md a1–a4, b1–b2): the Nodes list, New Node, the agent
and Built-In Node configuration, the node page with its actions (its executors, the projects
tied to it), its Build History, the live agent log, System Information, Trust SSH Host Key and
Configure Monitors. Views parse, call nodes.services, render; every state change is a service
call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from builds import labels as build_labels
from builds import widgets as build_widgets
from builds.models import Build, Job
from builds.scheduler import format_duration
from console.models import LogStream
from console.permissions import can
from nodes import agent_package, hostkeys, launchlog, monitors, services
from nodes.forms import (
    BuiltinNodeForm,
    MonitorSettingsForm,
    NewNodeForm,
    NodeConfigForm,
    OfflineReasonForm,
    SSHLauncherForm,
)
from nodes.launchers import launchers
from nodes.models import MonitorSettings, Node, NodeHostKey
from nodes.sizes import format_size

PAGE_SIZES = (25, 50, 100, 250)
DEFAULT_PAGE_SIZE = 50
BUILD_HISTORY_PAGE_SIZE = 50
LOG_TAIL_BYTES = 256 * 1024

Connection = Node.Connection
Offline = Node.Offline


def _require(user, perm: str) -> None:
    if not can(user, perm):
        raise PermissionDenied(perm)


def _node_or_404(name: str) -> Node:
    try:
        return services.get_node(name)
    except Node.DoesNotExist:
        raise Http404("No such node") from None


# --- monitor columns (texts and levels come from nodes.monitors) ---------------------------


def monitor_columns(user) -> list[tuple[str, str]]:
    """(key, caption) of the monitor columns this user sees; Free Swap Space is for
    administrators only, as in Jenkins."""
    administer = can(user, "auth.change_user")
    return [
        (key, caption)
        for key, caption, admin_only in monitors.COLUMNS
        if administer or not admin_only
    ]


def monitor_cells(node: Node, settings_row: MonitorSettings, columns) -> list[dict]:
    cells = monitors.monitor_columns(node, settings_row)
    return [cells[key] for key, _caption in columns]


# --- node state in words and icons ------------------------------------------------------------

LEGEND = {
    "online": "The agent is online and will accept tasks for execution when it has free executors.",
    "temp-offline": "The agent has been explicitly set to temporarily offline by a user. If the "
    "agent is still connected any running tasks will finish. No new tasks will start until the "
    "agent is put online again by a user.",
    "paused": "The agent has been put offline due to the configured retention strategy. It will "
    "be brought back online when needed.",
    "offline": "The agent is not connected or it is still connected but a node monitor decided "
    "that the agent is not in a healthy state.",
    "connecting": "The agent is being launched.",
}


@dataclass(frozen=True)
class Status:
    key: str
    css: str
    icon: str
    tooltip: str


LEGEND_ITEMS = [
    Status("online", "status-success", "computer", LEGEND["online"]),
    Status("temp-offline", "status-warning", "stop", LEGEND["temp-offline"]),
    Status("paused", "status-disabled", "clock", LEGEND["paused"]),
    Status("connecting", "status-running", "refresh", LEGEND["connecting"]),
    Status("offline", "status-failure", "x", LEGEND["offline"]),
]


def node_status(node: Node) -> Status:
    """The status icon of the list and the page, from both facts."""
    if node.connection == Connection.CONNECTING:
        return Status("connecting", "status-running", "refresh", LEGEND["connecting"])
    if node.offline == Offline.USER:
        return Status("temp-offline", "status-warning", "stop", LEGEND["temp-offline"])
    if node.offline == Offline.IDLE:
        return Status("paused", "status-disabled", "clock", LEGEND["paused"])
    if node.connection == Connection.CONNECTED and not node.offline:
        return Status("online", "status-success", "computer", LEGEND["online"])
    if node.connection == Connection.FAILED or node.offline == Offline.MONITOR:
        return Status("offline", "status-failure", "x", LEGEND["offline"])
    return Status("offline", "status-disabled", "computer", LEGEND["offline"])


def availability_text(node: Node) -> str:
    if not node.offline:
        return "Accepting tasks"
    return node.get_offline_display()


def node_labels(node: Node) -> list[str]:
    """The node's labels: its own name (``built-in`` for the built-in node) and its labels."""
    import shlex

    try:
        labels = shlex.split(node.label_string or "")
    except ValueError:
        labels = (node.label_string or "").split()
    own = "built-in" if node.is_builtin else node.name
    return [own] + [label for label in labels if label != own]


# --- the Nodes list ----------------------------------------------------------------------------

STATE_FILTERS = {
    "": ("All", None),
    "online": ("Online", Q(connection=Connection.CONNECTED, offline="")),
    "offline": ("Offline", ~Q(connection=Connection.CONNECTED) | ~Q(offline="")),
    "connecting": ("Connecting", Q(connection=Connection.CONNECTING)),
    "failed": ("Failed to launch", Q(connection=Connection.FAILED)),
    "temp-offline": ("Temporarily offline", Q(offline=Offline.USER)),
    "monitor": ("Offline by a monitor", Q(offline=Offline.MONITOR)),
}

# The Built-In Node stays first (as in Jenkins); then the chosen column, then the name.
SORTS = {
    "name": ("Name", "name"),
    "architecture": ("Architecture", "monitor_data__architecture__label"),
    "clock": ("Clock Difference", "monitor_data__clock__diff_ms"),
    "disk": ("Free Disk Space", "monitor_data__disk__free"),
    "swap": ("Free Swap Space", "monitor_data__swap__available_swap"),
    "temp": ("Free Temp Space", "monitor_data__temp__free"),
    "executors": ("Executors", "num_executors"),
}


def _label_q(label: str) -> Q:
    q = (
        Q(label_string=label)
        | Q(label_string__startswith=f"{label} ")
        | Q(label_string__endswith=f" {label}")
        | Q(label_string__contains=f" {label} ")
        | Q(name=label, is_builtin=False)
    )
    if label == "built-in":
        q |= Q(is_builtin=True)
    return q


def _ordering(sort: str) -> list:
    descending = sort.startswith("-")
    column = F(SORTS.get(sort.lstrip("-"), SORTS["name"])[1])
    column = column.desc(nulls_last=True) if descending else column.asc(nulls_last=True)
    return ["-is_builtin", column, "name"]


@dataclass
class NodeRow:
    node: Node
    status: Status
    cells: list[dict]
    labels: list[str]
    busy: int


def _list_context(request: HttpRequest) -> dict:
    columns = monitor_columns(request.user)
    builtin = services.ensure_builtin_node()
    settings_row = MonitorSettings.load()
    label = request.GET.get("label", "").strip()
    state = request.GET.get("state", "")
    if state not in STATE_FILTERS:
        state = ""
    sort = request.GET.get("sort", "name")
    if sort.lstrip("-") not in SORTS:
        sort = "name"
    try:
        per_page = int(request.GET.get("per_page", DEFAULT_PAGE_SIZE))
    except ValueError:
        per_page = DEFAULT_PAGE_SIZE
    if per_page not in PAGE_SIZES:
        per_page = DEFAULT_PAGE_SIZE

    nodes = Node.objects.select_related("offline_by")
    if label:
        nodes = nodes.filter(_label_q(label))
    condition = STATE_FILTERS[state][1]
    if condition is not None:
        nodes = nodes.filter(condition)
    nodes = nodes.order_by(*_ordering(sort))
    page = Paginator(nodes, per_page).get_page(request.GET.get("page"))
    page_nodes = list(page.object_list)
    busy = services.busy_executors_by_node(page_nodes)
    ages = monitors.data_obtained(page_nodes)
    rows = [
        NodeRow(
            node=node,
            status=node_status(node),
            cells=monitor_cells(node, settings_row, columns),
            labels=node_labels(node),
            busy=busy.get(node.pk, 0),
        )
        for node in page_nodes
    ]
    # Every label in use, for the filter (one query, whatever the number of nodes).
    all_labels: set[str] = set()
    for name, label_string, is_builtin in Node.objects.values_list(
        "name", "label_string", "is_builtin"
    ):
        all_labels.update(label_string.split())
        all_labels.add("built-in" if is_builtin else name)

    def query(**changes) -> str:
        params = {"label": label, "state": state, "sort": sort, "per_page": per_page}
        params.update(changes)
        defaults = {"label": "", "state": "", "sort": "name", "per_page": DEFAULT_PAGE_SIZE}
        return urlencode({k: v for k, v in params.items() if v != defaults.get(k) and v != ""})

    headers = []
    for key, caption in [("name", "Name")] + columns + [("executors", "Executors")]:
        sortable = key in SORTS
        active = sort.lstrip("-") == key
        descending = sort.startswith("-")
        next_sort = f"-{key}" if active and not descending else key
        headers.append(
            {
                "key": key,
                "caption": caption,
                "sortable": sortable,
                "aria_sort": ("descending" if descending else "ascending") if active else "",
                "href": "?" + query(sort=next_sort, page=1) if sortable else "",
            }
        )
    return {
        "rows": rows,
        "page": page,
        "builtin": builtin,
        "headers": headers,
        "data_obtained": [ages[key] for key, _caption in columns],
        "label": label,
        "state": state,
        "sort": sort,
        "per_page": per_page,
        "page_sizes": PAGE_SIZES,
        "state_filters": [(key, text) for key, (text, _q) in STATE_FILTERS.items()],
        "all_labels": sorted(all_labels),
        "page_query": lambda number: query(page=number),
        "query_without_page": query(),
        "legend": LEGEND_ITEMS,
        "can_add": can(request.user, "nodes.add_node"),
        "can_configure": can(request.user, "nodes.change_node"),
        "can_monitors": can(request.user, "nodes.change_monitorsettings"),
    }


@require_GET
def node_list(request: HttpRequest) -> HttpResponse:
    _require(request.user, "nodes.view_node")
    context = _list_context(request)
    context["pages"] = [
        (number, "?" + context["page_query"](number) if isinstance(number, int) else "")
        for number in context["page"].paginator.get_elided_page_range(context["page"].number)
    ]
    template = "nodes/_list_table.html" if request.headers.get("HX-Request") else "nodes/list.html"
    return render(request, template, context)


@require_POST
def update_now(request: HttpRequest) -> HttpResponse:
    """Refresh status: run the node monitors now."""
    _require(request.user, "nodes.change_monitorsettings")
    monitors.refresh_now()
    messages.info(request, "The node monitors are running; the table updates as data arrives.")
    return redirect("nodes:list")


@require_http_methods(["GET", "POST"])
def configure_monitors(request: HttpRequest) -> HttpResponse:
    _require(request.user, "nodes.change_monitorsettings")
    settings_row = MonitorSettings.load()
    form = MonitorSettingsForm(request.POST or None, instance=settings_row)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "The node monitor settings were saved.")
        return redirect("nodes:list")
    return render(request, "nodes/configure_monitors.html", {"form": form})


# --- New Node ----------------------------------------------------------------------------------


def _agent_names() -> list[str]:
    return list(Node.objects.filter(is_builtin=False).values_list("name", flat=True))


@require_GET
def new_node(request: HttpRequest) -> HttpResponse:
    _require(request.user, "nodes.add_node")
    form = NewNodeForm(initial={"name": request.GET.get("name", "")})
    return render(request, "nodes/new.html", {"form": form, "agent_names": _agent_names()})


def copy_node(source: Node, name: str) -> Node:
    """Copy Existing Node: the configuration, none of the state; held off until saved."""
    return Node.objects.create(
        name=name,
        description=source.description,
        num_executors=source.num_executors,
        remote_fs=source.remote_fs,
        label_string=source.label_string,
        mode=source.mode,
        launcher=source.launcher,
        launcher_config=dict(source.launcher_config or {}),
        retention=source.retention,
        in_demand_delay=source.in_demand_delay,
        idle_delay=source.idle_delay,
        env_vars=list(source.env_vars or []),
        disk_thresholds=dict(source.disk_thresholds or {}),
        hold_off_launch=True,
    )


@require_POST
def create_item(request: HttpRequest) -> HttpResponse:
    """Step 1's POST: copy a node, or show the Permanent Agent's configuration form."""
    _require(request.user, "nodes.add_node")
    form = NewNodeForm(request.POST)
    if not form.is_valid():
        return render(
            request, "nodes/new.html", {"form": form, "agent_names": _agent_names()}, status=400
        )
    name = form.cleaned_data["name"]
    if form.cleaned_data["mode"] == NewNodeForm.COPY:
        with transaction.atomic():
            node = copy_node(form.source, name)
            services.announce(node.pk, "created")
        return redirect("nodes:configure", name=node.name)
    config_form = NodeConfigForm(initial={"name": name})
    return render(request, "nodes/configure.html", _configure_context(request, config_form, None))


def _configure_context(request: HttpRequest, form, node: Node | None) -> dict:
    ssh_form = form.launcher_forms.get("ssh") if hasattr(form, "launcher_forms") else None
    return {
        **(_node_context(request, node) if node is not None else {}),
        "form": form,
        "node": node,
        "is_new": node is None,
        "ssh_form": ssh_form,
        "command_form": form.launcher_forms.get("command") if ssh_form is not None else None,
        "launchers": launchers(),
    }


def _launch_if_kept_online(node: Node) -> None:
    """After a save: a "Keep this agent online" agent that is not connected is launched."""
    node.refresh_from_db()
    if node.retention != Node.Retention.ALWAYS or node.is_builtin:
        return
    if node.connection not in (Connection.DISCONNECTED, Connection.FAILED):
        return
    try:
        services.request_launch(node, reason="Launching the new configuration")
    except services.NodeError:
        pass


@require_POST
def do_create_item(request: HttpRequest) -> HttpResponse:
    _require(request.user, "nodes.add_node")
    form = NodeConfigForm(request.POST)
    if not form.is_valid():
        return render(
            request, "nodes/configure.html", _configure_context(request, form, None), status=400
        )
    with transaction.atomic():
        node = form.save()
        services.announce(node.pk, "created")
        transaction.on_commit(lambda: _launch_if_kept_online(node))
    for warning in form.all_warnings():
        messages.warning(request, warning)
    messages.success(request, f"Agent ‘{node.name}’ was created.")
    return redirect("nodes:list")


@require_GET
def ssh_credentials(request: HttpRequest) -> HttpResponse:
    """htmx: the Credentials select for the host being typed (with why others are missing)."""
    if not (can(request.user, "nodes.add_node") or can(request.user, "nodes.change_node")):
        raise PermissionDenied("nodes.change_node")
    data = request.GET.copy()
    form = SSHLauncherForm(data, prefix="ssh")
    return render(request, "nodes/_ssh_credentials.html", {"ssh_form": form})


# --- one node ----------------------------------------------------------------------------------


def _perms(user) -> dict[str, bool]:
    return {
        "view": can(user, "nodes.view_node"),
        "configure": can(user, "nodes.change_node"),
        "delete": can(user, "nodes.delete_node"),
        "connect": can(user, "nodes.connect_node"),
        "disconnect": can(user, "nodes.disconnect_node"),
        "builds": can(user, "builds.view_job"),
    }


def _ago(moment) -> str:
    """ "12 sec", "3 min 5 sec" (Jenkins' time spans) since ``moment``; "" if unknown."""
    if moment is None:
        return ""
    return monitors.time_span(max(0.0, (timezone.now() - moment).total_seconds() * 1000))


def _until(moment) -> str:
    if moment is None:
        return ""
    seconds = (moment - timezone.now()).total_seconds()
    return monitors.time_span(seconds * 1000) if seconds > 0 else "a moment"


def _node_context(request: HttpRequest, node: Node) -> dict:
    settings_row = MonitorSettings.load()
    columns = monitor_columns(request.user)
    cells = monitor_cells(node, settings_row, columns)
    ages = monitors.data_obtained([node])
    launcher = launchers().get(node.launcher)
    pending = NodeHostKey.objects.filter(node=node, trusted=False).first()
    return {
        "node": node,
        "status": node_status(node),
        "node_perms": _perms(request.user),
        "launcher": launcher,
        "launch_supported": bool(launcher and launcher.launch_supported),
        "monitor_rows": [
            (caption, cell, ages[key]) for (key, caption), cell in zip(columns, cells, strict=True)
        ],
        "labels": node_labels(node),
        "offline_cause": services.offline_cause_text(node),
        "availability": availability_text(node),
        "pending_key": pending,
        "next_attempt": _until(node.next_launch_at),
        "connection_ago": _ago(node.connection_changed_at),
        "offline_ago": _ago(node.offline_at),
        "is_connecting": node.connection == Connection.CONNECTING,
        "is_connected": node.connection == Connection.CONNECTED,
        "can_launch": node.connection in (Connection.DISCONNECTED, Connection.FAILED),
    }


@dataclass(frozen=True)
class TiedProject:
    name: str
    url: str
    label_expression: str
    color: str
    tooltip: str

    @property
    def base_color(self) -> str:
        return self.color.removesuffix("_anime")

    @property
    def anime(self) -> bool:
        return self.color.endswith("_anime")


def tied_job_ids(node: Node) -> list[int]:
    """Ids of the jobs this node may run by their label expression (Jenkins' "Projects tied
    to"): the expression is satisfied by the node's labels. Jobs without an expression are
    tied to the built-in node, unless it is reserved (EXCLUSIVE) for matching expressions.
    An expression that does not parse ties nothing. One query; each distinct expression is
    parsed once."""
    own = build_labels.node_labels(node.name, node.label_string, is_builtin=node.is_builtin)
    takes_unlabelled = node.is_builtin and node.mode != Node.Mode.EXCLUSIVE
    verdicts: dict[str, bool] = {}
    tied = []
    for job_id, text in Job.objects.order_by("name").values_list("pk", "label_expression"):
        key = (text or "").strip()
        if key not in verdicts:
            try:
                expression = build_labels.parse_label_expression(key)
            except build_labels.LabelExpressionError:
                verdicts[key] = False
            else:
                verdicts[key] = takes_unlabelled if expression is None else expression.matches(own)
        if verdicts[key]:
            tied.append(job_id)
    return tied


def tied_projects(node: Node) -> list[TiedProject]:
    """The projects tied to ``node`` with their status balls, by name (at most two queries)."""
    ids = tied_job_ids(node)
    if not ids:
        return []
    jobs = build_widgets.with_job_status(Job.objects.filter(pk__in=ids).order_by("name"))
    projects = []
    for job in jobs:
        color = build_widgets.job_color(job)
        projects.append(
            TiedProject(
                name=job.name,
                url=build_widgets.job_path(job.name),
                label_expression=job.label_expression.strip(),
                color=color,
                tooltip=build_widgets.ball_tooltip(color),
            )
        )
    return projects


def _status_context(request: HttpRequest, node: Node) -> dict:
    """The node page's state panel: the node's context plus the projects tied to it."""
    context = _node_context(request, node)
    context["projects"] = tied_projects(node) if context["node_perms"]["builds"] else []
    return context


@require_GET
def node_detail(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.view_node")
    node = _node_or_404(name)
    return render(request, "nodes/detail.html", _status_context(request, node))


@require_GET
def node_state(request: HttpRequest, name: str) -> HttpResponse:
    """htmx: the node page's state panel plus its side panel (out of band)."""
    _require(request.user, "nodes.view_node")
    node = _node_or_404(name)
    if request.GET.get("part") == "tasks":
        # The side panel alone, for the node's other pages (log, system information …).
        active = request.GET.get("active", "")
        context = {**_node_context(request, node), f"active_{active}": bool(active)}
        return render(request, "nodes/_node_tasks.html", context)
    context = {**_status_context(request, node), "oob": True, "active_status": True}
    return render(request, "nodes/_node_state.html", context)


@require_POST
def launch_agent(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.connect_node")
    node = _node_or_404(name)
    try:
        services.request_launch(node, reason=f"Launched by {request.user.get_username()}")
    except services.NodeError as exc:
        messages.error(request, str(exc))
        return redirect(node.get_absolute_url())
    return redirect("nodes:log", name=node.url_name)


@require_POST
def cancel_launch(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.connect_node")
    node = _node_or_404(name)
    if services.cancel_launch(node):
        messages.info(request, "The launch is being cancelled.")
    else:
        messages.warning(request, "This node is not being launched.")
    return redirect(node.get_absolute_url())


@require_GET
def disconnect_form(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.disconnect_node")
    node = _node_or_404(name)
    return render(
        request,
        "nodes/offline_form.html",
        {
            "node": node,
            "form": OfflineReasonForm(),
            "title": f"Disconnect the computer ‘{node.display_name}’?",
            "blurb": "You can optionally explain why you are disconnecting this node, so that "
            "others can see why:",
            "action": reverse("nodes:do-disconnect", args=[node.url_name]),
            "button": "Yes",
            "button_class": "btn-danger",
        },
    )


@require_POST
def do_disconnect(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.disconnect_node")
    node = _node_or_404(name)
    services.disconnect(node, request.user, request.POST.get("offlineMessage", "").strip())
    return redirect(node.get_absolute_url())


@require_GET
def mark_offline_form(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.disconnect_node")
    node = _node_or_404(name)
    return render(
        request,
        "nodes/offline_form.html",
        {
            "node": node,
            "form": OfflineReasonForm(),
            "title": f"Taking {node.display_name} Offline",
            "blurb": "You can optionally explain why you are taking this node offline, so that "
            "others can see why:",
            "action": reverse("nodes:toggle-offline", args=[node.url_name]),
            "button": "Mark this node temporarily offline",
            "button_class": "btn-primary",
        },
    )


@require_POST
def toggle_offline(request: HttpRequest, name: str) -> HttpResponse:
    node = _node_or_404(name)
    if node.offline:
        _require(request.user, "nodes.connect_node")
        services.bring_online(node)
    else:
        _require(request.user, "nodes.disconnect_node")
        services.mark_offline(node, request.user, request.POST.get("offlineMessage", ""))
    return redirect(node.get_absolute_url())


@require_GET
def set_offline_cause(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.disconnect_node")
    node = _node_or_404(name)
    if node.offline != Offline.USER:
        return redirect(node.get_absolute_url())
    return render(
        request,
        "nodes/offline_form.html",
        {
            "node": node,
            "form": OfflineReasonForm(initial={"offlineMessage": node.offline_message}),
            "title": f"Set {node.display_name} Offline Reason",
            "blurb": "You can optionally explain why you are taking this node offline, so that "
            "others can see why:",
            "action": reverse("nodes:change-offline-cause", args=[node.url_name]),
            "button": "Update reason",
            "button_class": "btn-primary",
        },
    )


@require_POST
def change_offline_cause(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.disconnect_node")
    node = _node_or_404(name)
    services.update_offline_reason(node, request.user, request.POST.get("offlineMessage", ""))
    return redirect(node.get_absolute_url())


@require_http_methods(["GET", "POST"])
def configure(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the configuration form; POST (Jenkins' ``configSubmit`` posts here too): save."""
    _require(request.user, "nodes.change_node")
    node = _node_or_404(name)
    form_class = BuiltinNodeForm if node.is_builtin else NodeConfigForm
    if request.method == "GET":
        form = form_class(instance=node)
        return render(request, "nodes/configure.html", _configure_context(request, form, node))
    held_off = node.hold_off_launch
    form = form_class(request.POST, instance=node)
    if not form.is_valid():
        return render(
            request, "nodes/configure.html", _configure_context(request, form, node), status=400
        )
    with transaction.atomic():
        node = form.save(commit=False)
        node.hold_off_launch = False
        node.save()
        services.announce(node.pk, "configured")
        if held_off:
            transaction.on_commit(lambda: _launch_if_kept_online(node))
    for warning in form.all_warnings():
        messages.warning(request, warning)
    messages.success(request, "Saved.")
    return redirect(node.get_absolute_url())


@require_GET
def delete_confirm(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.delete_node")
    node = _node_or_404(name)
    if node.is_builtin:
        raise Http404("The built-in node cannot be deleted.")
    return render(request, "nodes/delete.html", {"node": node})


@require_POST
def do_delete(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.delete_node")
    node = _node_or_404(name)
    try:
        with transaction.atomic():
            services.delete_node(node)
    except services.NodeError as exc:
        messages.error(request, str(exc))
        return redirect(node.get_absolute_url())
    messages.success(request, f"Agent ‘{name}’ was deleted.")
    return redirect("nodes:list")


@require_GET
def system_info(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.connect_node")
    node = _node_or_404(name)
    info = node.agent_info or {}
    connected = node.connection == Connection.CONNECTED
    facts = _system_facts(info) if connected else []
    environment = sorted((info.get("environment") or {}).items()) if connected else []
    return render(
        request,
        "nodes/system_info.html",
        {
            **_node_context(request, node),
            "connected": connected,
            "facts": facts,
            "environment": environment,
            "header": _system_header(info),
        },
    )


def _system_header(info: dict) -> str:
    os_name = (info.get("os") or {}).get("name") or "Unknown"
    return f"{os_name} agent, version {info.get('agent_version', 'unknown')}"


def _system_facts(info: dict) -> list[tuple[str, str]]:
    """What the agent's hello reported, in words (whatever keys it gave)."""
    facts: list[tuple[str, str]] = []
    os_info = info.get("os") or {}
    if os_info:
        facts.append(
            (
                "Operating system",
                " ".join(str(os_info.get(k, "")) for k in ("name", "release")).strip(),
            )
        )
        if os_info.get("version"):
            facts.append(("Kernel version", str(os_info["version"])))
    arch = info.get("architecture")
    if isinstance(arch, dict):
        facts.append(("Architecture", f"{arch.get('label', '')} ({arch.get('machine', '')})"))
    elif arch:
        facts.append(("Architecture", str(arch)))
    python = info.get("python") or {}
    if python:
        facts.append(
            (
                "Python",
                f"{python.get('implementation', '')} {python.get('version', '')} "
                f"({python.get('executable', '')})".strip(),
            )
        )
    for key, label in (
        ("agent_version", "Agent version"),
        ("protocol_version", "Protocol version"),
        ("agent_hash", "Agent hash (sha256)"),
        ("cpus", "CPUs"),
        ("hostname", "Host name"),
        ("user", "User"),
        ("cwd", "Working directory"),
        ("remote_root", "Remote root directory"),
        ("launcher", "Launcher"),
    ):
        if info.get(key) not in (None, ""):
            facts.append((label, str(info[key])))
    memory = info.get("memory") or {}
    if memory:
        facts.append(
            (
                "Memory",
                f"{format_size(memory.get('available_physical'))} free of "
                f"{format_size(memory.get('total_physical'))}",
            )
        )
        facts.append(
            (
                "Swap",
                f"{format_size(memory.get('available_swap'))} free of "
                f"{format_size(memory.get('total_swap'))}",
            )
        )
    for key, label in (("disk", "Remote root disk"), ("temp", "Temporary directory disk")):
        disk = info.get(key) or {}
        if disk.get("free") is not None:
            facts.append(
                (
                    label,
                    f"{format_size(disk['free'])} free of {format_size(disk.get('total'))} on "
                    f"{disk.get('path', '')}",
                )
            )
    known = {
        "os",
        "architecture",
        "python",
        "memory",
        "disk",
        "temp",
        "environment",
        "clock_ms",
        "agent_version",
        "protocol_version",
        "agent_hash",
        "cpus",
        "hostname",
        "user",
        "cwd",
        "remote_root",
        "launcher",
        "root",
    }
    for key in sorted(set(info) - known):
        value = info[key]
        if isinstance(value, str | int | float | bool):
            facts.append((key.replace("_", " ").capitalize(), str(value)))
    return facts


@dataclass(frozen=True)
class HistoryRow:
    build: Build
    job_url: str
    build_url: str
    color: str  # the widgets' ball class: blue, red, … (nobuilt while running)
    anime: bool
    result: str  # in words: Success, Failed, …, In progress, Pending
    since: str  # "3 min 4 sec" since it started; "" while pending
    duration: str


RESULT_WORDS = dict(Build.Result.choices)


def history_row(build: Build, now) -> HistoryRow:
    """One build of a node's Build History, its ball and times in Jenkins' words."""
    since = format_duration((now - build.started_at).total_seconds()) if build.started_at else ""
    if build.status == Build.Status.FINISHED:
        color, anime = build_widgets.RESULT_COLORS.get(build.result, "nobuilt"), False
        result = RESULT_WORDS.get(build.result, "")
        duration = format_duration((build.duration_ms or 0) / 1000)
    elif build.started_at is None:
        color, anime, result, duration = "nobuilt", True, "Pending", ""
    else:
        color, anime, result = "nobuilt", True, build_widgets.IN_PROGRESS
        duration = f"Running for {since}"
    return HistoryRow(
        build=build,
        job_url=build_widgets.job_path(build.job.name),
        build_url=build_widgets.build_path(build.job.name, build.number),
        color=color,
        anime=anime,
        result=result,
        since=since,
        duration=duration,
    )


def node_builds(node: Node):
    """The builds that ran (or run) on ``node``, newest first. Builds keep the node's name when
    their node is deleted, so a node made again under that name finds them, as in Jenkins."""
    on_node = Q(node=node) | Q(node__isnull=True, node_name=node.url_name)
    return (
        Build.objects.filter(on_node)
        .select_related("job")
        # A build is made when an executor is given to it: creation order is start order.
        .order_by("-created_at", "-pk")
    )


@require_GET
def build_history(request: HttpRequest, name: str) -> HttpResponse:
    """Build History of a node: a page of its builds, two queries (count and rows)."""
    _require(request.user, "nodes.view_node")
    _require(request.user, "builds.view_job")
    node = _node_or_404(name)
    page = Paginator(node_builds(node), BUILD_HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    return render(
        request,
        "nodes/builds.html",
        {
            **_node_context(request, node),
            "page": page,
            "rows": [history_row(build, now) for build in page.object_list],
        },
    )


@require_http_methods(["GET", "POST"])
def trust_host_key(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.change_node")
    node = _node_or_404(name)
    pending = NodeHostKey.objects.filter(node=node, trusted=False).first()
    trusted = NodeHostKey.objects.filter(node=node, trusted=True).first()
    if request.method == "POST":
        if pending is None:
            messages.warning(request, "There is no SSH host key waiting to be trusted.")
        elif "yes" in request.POST:
            key = hostkeys.trust_pending_key(node, request.user)
            services.announce(node.pk, "hostkey")
            if key is not None:
                messages.success(
                    request,
                    f"The SSH host key with fingerprint {key.fingerprint} is now trusted. "
                    "Launch the agent to connect.",
                )
        else:
            hostkeys.reject_pending_key(node)
            services.announce(node.pk, "hostkey")
            messages.info(request, "The SSH host key was not trusted.")
        return redirect(node.get_absolute_url())
    if pending is None:
        messages.info(request, "There is no SSH host key waiting to be trusted.")
        return redirect(node.get_absolute_url())
    if trusted is None:
        question = (
            f"Do you want to trust the SSH Host Key with fingerprint {pending.fingerprint} for "
            "future connections to this host?"
        )
    else:
        question = (
            f"Do you want to replace the SSH Host Key with fingerprint {trusted.fingerprint} with "
            f"the SSH Host Key with fingerprint {pending.fingerprint} for all future connections "
            "to this host?"
        )
    return render(
        request,
        "nodes/trust_host_key.html",
        {
            **_node_context(request, node),
            "pending": pending,
            "trusted": trusted,
            "question": question,
        },
    )


# --- the agent log -------------------------------------------------------------------------------


def _log_launch(request: HttpRequest, node: Node) -> tuple[int, list[int]]:
    """The launch to show (``?launch=n``, else the latest) and the launches kept, newest
    first. The latest launch is listed even before its task has written a line."""
    numbers = set(launchlog.launch_numbers(node.pk))
    if node.launch_number:
        numbers.add(node.launch_number)
    ordered = sorted(numbers, reverse=True)[: launchlog.KEEP_LAUNCHES]
    try:
        wanted = int(request.GET.get("launch", ""))
    except ValueError:
        wanted = 0
    if wanted in ordered:
        return wanted, ordered
    return (ordered[0] if ordered else 0), ordered


def _tail_offset(key: str) -> int:
    """Where the page starts showing a long log: the last LOG_TAIL_BYTES, from a line start."""
    from console import logs

    row = LogStream.objects.filter(key=key).values_list("pk", "size").first()
    if row is None or row[1] <= LOG_TAIL_BYTES:
        return 0
    start = row[1] - LOG_TAIL_BYTES
    head = logs.read(row[0], start, 64 * 1024)
    newline = head.find(b"\n")
    return start + newline + 1 if newline >= 0 else start


@require_GET
def node_log(request: HttpRequest, name: str) -> HttpResponse:
    _require(request.user, "nodes.connect_node")
    node = _node_or_404(name)
    launch, numbers = _log_launch(request, node)
    key = f"node-{node.pk}-log-{launch}"
    return render(
        request,
        "nodes/log.html",
        {
            **_node_context(request, node),
            "launch": launch,
            "launches": numbers,
            "follow_latest": launch == (numbers[0] if numbers else 0),
            "start_offset": _tail_offset(key),
        },
    )


@require_GET
def node_log_text(request: HttpRequest, name: str) -> HttpResponse:
    """The whole log of one launch as plain text (a download)."""
    from console import logs

    _require(request.user, "nodes.connect_node")
    node = _node_or_404(name)
    launch, _numbers = _log_launch(request, node)
    stream = LogStream.objects.filter(key=f"node-{node.pk}-log-{launch}").first()
    if stream is None:
        raise Http404("No log for this launch")
    response = StreamingHttpResponse(
        logs.iter_bytes(stream.pk), content_type="text/plain; charset=utf-8"
    )
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.url_name)
    response["Content-Disposition"] = f'attachment; filename="{safe}-launch-{launch}.log"'
    return response


# --- the agent program ---------------------------------------------------------------------------


@require_GET
def agent_pyz(request: HttpRequest) -> HttpResponse:
    """``/jnlpJars/agent.pyz``: the agent program, for the command launcher's hosts."""
    digest = agent_package.agent_hash()
    etag = f'"{digest}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponse(status=304)
    response = HttpResponse(agent_package.agent_bytes(), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{agent_package.FILE_NAME}"'
    response["ETag"] = etag
    response["X-Agent-Hash"] = digest
    return response
