from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _grant_admin_permissions(sender, **kwargs):
    from staging.services.accounts import roles_grant_admin_permissions

    roles_grant_admin_permissions()


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self) -> None:
        # Connect receivers: the token memory forgets a token revoked or a role changed through
        # this process; a deleted job's results file is removed.
        from staging import token_cache  # noqa: F401
        from staging.api.job_output import job_summary
        from staging.services import results  # noqa: F401
        from staging.services.webhooks import job_summary_shape_set

        # Webhook bodies show a job as the API does; the API's serializers say how.
        job_summary_shape_set(job_summary)

        # After every migrate (and test database flush), once the permissions exist: the role
        # groups get their admin-site permissions without a manual step.
        post_migrate.connect(
            _grant_admin_permissions, sender=self, dispatch_uid="staging_admin_permissions"
        )
