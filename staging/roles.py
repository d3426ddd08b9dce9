"""Roles (Django groups) and what each may do: the one place the access policy lives.

| policy        | data-admin | data-user | collection-admin | admin | service-user |
|---------------|:----------:|:---------:|:----------------:|:-----:|:------------:|
| dts           |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| catalogue     |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| task_status   |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |

Visibility of a job: its owner, and every data-admin. Anyone else is told 404, never 403, so
job ids cannot be probed.

In the admin site (staff users only, ``is_staff``), the groups carry Django permissions
(``ADMIN_SITE_PERMISSIONS``, granted on every migrate): ``admin`` manages users, API tokens and
stores; ``data-admin`` watches every job and steers it (cancel, retry, release pins).
"""

from enum import StrEnum


class Role(StrEnum):
    DATA_ADMIN = "data-admin"
    DATA_USER = "data-user"
    COLLECTION_ADMIN = "collection-admin"
    ADMIN = "admin"
    SERVICE_USER = "service-user"


POLICIES: dict[str, frozenset[Role]] = {
    "dts": frozenset({Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN, Role.SERVICE_USER}),
    "catalogue": frozenset(
        {Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN, Role.SERVICE_USER}
    ),
    "task_status": frozenset({Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN}),
}


def roles_of(user) -> frozenset[str]:
    """The user's roles, cached on the user object for the rest of the request."""
    cached = getattr(user, "_staging_roles", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached |= {Role.DATA_ADMIN}
        user._staging_roles = cached
    return cached


def allowed(user, policy: str) -> bool:
    return bool(roles_of(user) & POLICIES[policy])


def sees_all_jobs(user) -> bool:
    return Role.DATA_ADMIN in roles_of(user)


# "app_label.codename" permissions each role's group holds in the admin site. Granting is
# additive: permissions given to a group by hand are kept.
ADMIN_SITE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(
        {
            "auth.add_user",
            "auth.change_user",
            "auth.delete_user",
            "auth.view_user",
            "auth.view_group",
            "knox.add_authtoken",
            "knox.delete_authtoken",
            "knox.view_authtoken",
            "staging.add_store",
            "staging.change_store",
            "staging.delete_store",
            "staging.view_store",
        }
    ),
    Role.DATA_ADMIN: frozenset(
        {
            # change_job is what the job actions (cancel, retry, release pins) require.
            "staging.view_job",
            "staging.change_job",
            "staging.view_subjob",
            "staging.view_item",
            "staging.view_pin",
            "staging.view_file",
            "staging.view_store",
            "django_celery_results.view_taskresult",
        }
    ),
}
