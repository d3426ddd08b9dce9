from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _grant_admin_permissions(sender, **kwargs):
    from staging.services.accounts import roles_grant_admin_permissions

    roles_grant_admin_permissions()


class StagingConfig(AppConfig):
    name = "staging"
    verbose_name = "Staging"

    def ready(self) -> None:
        # Connects the receiver that removes a deleted job's results file.
        from staging.services import results  # noqa: F401

        # After every migrate (and test database flush), once the permissions exist: the role
        # groups get their admin-site permissions without a manual step.
        post_migrate.connect(
            _grant_admin_permissions, sender=self, dispatch_uid="staging_admin_permissions"
        )
