"""Celery tasks of builds: the scheduler, running a build, and the sweeps."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from builds import services
from builds.models import Build, QueueItem
from console import recovery


@shared_task(name="builds.schedule")
def schedule() -> int:
    return len(services.run_scheduler())


@shared_task(name="builds.run_build")
def run_build(build_id: int) -> str:
    from builds.execution import execute

    return execute(build_id)


@shared_task(name="builds.watch_abort")
def watch_abort(build_id: int) -> str:
    """An aborted build that never started (its task was lost) is finished here."""
    build = Build.objects.filter(
        pk=build_id, status=Build.Status.PENDING, abort_requested=True
    ).first()
    if build is None:
        return "nothing to do"
    services.finish_build(build_id, Build.Result.ABORTED)
    return "aborted"


@shared_task(name="builds.sweep")
def sweep() -> int:
    """Periodic: fail builds whose worker died, and run the scheduler (quiet periods end,
    nodes come online) so every queued item always shows a current why."""
    lost = services.lost_builds_sweep()
    if QueueItem.objects.filter(state__in=QueueItem.LIVE_STATES).exists():
        services.run_scheduler()
    return lost


@recovery.register("builds")
def recover_builds() -> int:
    """After a restart the queue is kept (it is rows); pending builds whose task was lost are
    enqueued again, and the scheduler runs."""
    count = 0
    if not settings.STEWARD_SCALED:
        for build in Build.objects.filter(status=Build.Status.RUNNING):
            services.end_lost_build(
                build, "Steward was restarted while this build was running", Build.Result.ABORTED
            )
            count += 1
        for build in Build.objects.filter(status=Build.Status.PENDING):
            run_build.delay(build.pk)
            count += 1
    schedule.delay()
    return count
