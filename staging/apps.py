from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate


def _grant_admin_permissions(sender, **kwargs):
    from staging.services.accounts import roles_grant_admin_permissions

    roles_grant_admin_permissions()


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self) -> None:
        # Every receiver of the app is connected here. The token memory's own receivers (it
        # forgets a token revoked or a role changed through this process) connect on import,
        # beside the memory they clear.
        from staging import signals
        from staging.api import token_cache  # noqa: F401
        from staging.models import Job

        post_delete.connect(
            signals.results_file_of_deleted_job_remove,
            sender=Job,
            dispatch_uid="staging_results_file_of_deleted_job",
        )
        # After every migrate (and test database flush), once the permissions exist: the role
        # groups get their admin-site permissions without a manual step.
        post_migrate.connect(
            _grant_admin_permissions, sender=self, dispatch_uid="staging_admin_permissions"
        )
