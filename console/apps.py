from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Steward console"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from console import permissions, tasks  # noqa: F401  (registers recovery hooks)

        # No sender filter: the groups must be synced after the permissions of every managed
        # app exist, and those apps come after console in INSTALLED_APPS.
        post_migrate.connect(
            permissions.sync_groups_after_migrate, dispatch_uid="steward-sync-groups"
        )
