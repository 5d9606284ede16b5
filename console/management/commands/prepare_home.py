"""``manage.py prepare_home``: migrate, then make the data directory ready (what every start does)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from console.services import prepare_home


class Command(BaseCommand):
    help = "Apply migrations, create the data directory, groups and (first time) the admin user."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        path = prepare_home()
        if path:
            self.stdout.write(f"Initial admin 'admin' created; password in {path}")
