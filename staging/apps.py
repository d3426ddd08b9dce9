from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


def _grant_admin_permissions(sender, **kwargs):
    from staging.services.accounts import roles_grant_admin_permissions

    roles_grant_admin_permissions()


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self) -> None:
        # Every receiver of the app is connected here (staging.signals says why each exists).
        from django.contrib.auth import get_user_model
        from knox.models import AuthToken

        from staging import signals
        from staging.api.job_output import job_summary
        from staging.models import Job
        from staging.services.webhooks import job_summary_shape_set

        # Webhook bodies show a job as the API does; the API's serializers say how (the domain
        # does not import the API).
        job_summary_shape_set(job_summary)

        post_delete.connect(
            signals.results_file_of_deleted_job_remove,
            sender=Job,
            dispatch_uid="staging_results_file_of_deleted_job",
        )
        post_delete.connect(
            signals.revoked_token_forget,
            sender=AuthToken,
            dispatch_uid="token_cache_forget_revoked",
        )
        post_save.connect(
            signals.tokens_forget_all,
            sender=get_user_model(),
            dispatch_uid="token_cache_forget_on_user_save",
        )
        m2m_changed.connect(
            signals.tokens_forget_all,
            sender=get_user_model().groups.through,
            dispatch_uid="token_cache_forget_roles",
        )
        # After every migrate (and test database flush), once the permissions exist: the role
        # groups get their admin-site permissions without a manual step.
        post_migrate.connect(
            _grant_admin_permissions, sender=self, dispatch_uid="staging_admin_permissions"
        )
