from django.apps import AppConfig


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self) -> None:
        # Connects the receiver that removes a deleted job's results file.
        from staging.services import results  # noqa: F401
