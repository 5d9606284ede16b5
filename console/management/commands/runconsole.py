"""``manage.py runconsole``: the embedded default in one process (what ``make run`` starts)."""

from __future__ import annotations

import signal
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from console.env import env_int, env_str


class Command(BaseCommand):
    help = "Run the Steward console, its Celery worker and beat in one process (embedded default)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=env_str("STEWARD_BIND", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=env_int("STEWARD_PORT", 8080))
        parser.add_argument(
            "--worker-threads", type=int, default=settings.CELERY_WORKER_CONCURRENCY
        )
        parser.add_argument("--no-migrate", action="store_true", help="skip `migrate` at start")

    def handle(self, *args, host: str, port: int, worker_threads: int, no_migrate: bool, **kw):
        # Started in the background by a script, a process inherits SIGINT ignored: Ctrl-C and
        # `kill -INT` must still stop it, also while it starts (EmbeddedConsole takes over).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._start(host, port, worker_threads, no_migrate)
        except KeyboardInterrupt:
            self.stderr.write("Steward was stopped while starting.")
            sys.exit(130)

    def _start(self, host: str, port: int, worker_threads: int, no_migrate: bool) -> None:
        from console.embedded import EmbeddedConsole
        from console.services import prepare_home

        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        admin_password_file = prepare_home()
        if admin_password_file:
            self.stdout.write(
                "\n" + "*" * 72 + "\n\n"
                "Steward initial setup: an admin user 'admin' has been created and a password\n"
                "generated. The password is in this file (readable by you only):\n\n"
                f"    {admin_password_file}\n\n" + "*" * 72 + "\n"
            )
        self.stdout.write(f"Steward home: {settings.STEWARD_HOME}")
        self.stdout.write(f"Steward is running at http://{host}:{port}/  (Ctrl-C stops it)")
        self.stdout.flush()
        sys.exit(EmbeddedConsole(host, port, worker_threads).run())
