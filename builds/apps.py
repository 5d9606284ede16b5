from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "builds"
    verbose_name = "Builds"

    def ready(self) -> None:
        # Registers the busy-executor counter with nodes, and the recovery hook.
        from builds import services, tasks  # noqa: F401
