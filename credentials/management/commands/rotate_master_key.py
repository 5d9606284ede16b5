"""``manage.py rotate_master_key``: re-encrypt every secret with a new credentials master key."""

from django.core.management.base import BaseCommand, CommandError

from credentials import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with a new master key, then retire the old key. Safe to "
        "interrupt: the console keeps working and running it again finishes the job. With "
        "STEWARD_MASTER_KEY, set it to '<new>,<old>' on every process first."
    )

    def handle(self, *args, **options):
        try:
            report = crypto.rotate_master_key(
                on_row=lambda n: self.stdout.write(f"  re-encrypted {n}") if n % 100 == 0 else None
            )
        except (crypto.MasterKeyError, crypto.DecryptionError) as exc:
            raise CommandError(str(exc)) from exc
        if report.resumed:
            self.stdout.write(f"Resuming an interrupted rotation to master key {report.key_id}.")
        self.stdout.write(
            f"Re-encrypted {report.reencrypted} secrets with master key {report.key_id}."
        )
        if report.still_in_use:
            raise CommandError(
                f"Master key {', '.join(report.still_in_use)} is still used by some rows (they "
                "changed during the rotation). Run rotate_master_key again."
            )
        if report.from_environment:
            if report.retired:
                self.stdout.write(
                    f"No secret uses master key {', '.join(report.retired)} any more: remove it "
                    f"from {crypto.ENV_VARIABLE} on every process."
                )
        elif report.retired:
            self.stdout.write(
                f"Retired master key {', '.join(report.retired)} from {crypto.key_file_path()}."
            )
        self.stdout.write(self.style.SUCCESS("Master key rotation complete."))
