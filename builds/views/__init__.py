"""The jobs and builds screens and their Jenkins endpoints, one module per screen family: the
jobs (``jobs``), builds and their console (``runs``) and the JSON endpoints (``api``).
Views parse, call builds.services (or the job changes in builds.forms), render."""

from builds.views.api import build_api, job_api, queue_item, queue_item_api
from builds.views.common import PERMALINKS
from builds.views.jobs import (
    build_now,
    check_job_name,
    check_label,
    configure,
    delete_job,
    job_detail,
    new_job,
    permalink,
    rename,
    set_enabled,
)
from builds.views.runs import (
    build_detail,
    console,
    console_full,
    console_tail,
    console_text,
    progressive_text,
    stop_build,
)

__all__ = [
    "PERMALINKS",
    "build_api",
    "build_detail",
    "build_now",
    "check_job_name",
    "check_label",
    "configure",
    "console",
    "console_full",
    "console_tail",
    "console_text",
    "delete_job",
    "job_api",
    "job_detail",
    "new_job",
    "permalink",
    "progressive_text",
    "queue_item",
    "queue_item_api",
    "rename",
    "set_enabled",
    "stop_build",
]
