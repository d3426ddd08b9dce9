"""Roles (Django groups) and what each may do: the one place the access policy lives.

Every API view names one policy (``role_policy``); ``staging.api.permissions.RolePolicy``
applies it. The table (also in docs/security.md):

| policy         | data-admin | data-user | collection-admin | admin | service-user |
|----------------|:----------:|:---------:|:----------------:|:-----:|:------------:|
| dts            |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| catalogue      |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| tape           |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| task_status    |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| jobs_submit    |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| jobs_read      |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| jobs_control   |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| tasks          |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| docs           |  anyone, no token needed                                          |
| tape_discovery |  anyone, no token needed                                          |

- dts: POST/GET /dts/staging, GET /dts/resources, /dts/search, /dts/localuser/{orcid}
- catalogue: GET /api/v1/files/
- tape: the WLCG Tape REST API under /tape/api/v1/ (stage, poll, cancel, delete, release,
  archiveinfo): FTS3 and gfal2 stage on behalf of users, as the DTS does
- task_status: GET /api/v1/task_status/{id} and …/peek
- jobs_submit: POST /api/v1/jobs/
- jobs_read: GET /api/v1/jobs/ and every GET under /api/v1/jobs/{id}/; GET /dmi/v1/dataJob/…
- jobs_control: POST /api/v1/jobs/{id}/cancel, …/retry, …/release
- tasks: the task catalogue in both dialects, GET and POST /durastore/task… and
  /api/v1/tasks/…: list a store's tasks, perform one (it starts a job, as jobs_submit does)
- docs: GET /api/schema/, /api/docs/
- tape_discovery: GET /.well-known/wlcg-tape-rest-api, public as at every tape site

The task_status row is seed 001's matrix; the other job policies extend it. The service user is
the account of services that act for users (the DTS, FTS3): it speaks their dialects only. The
admin role manages the site (the Django admin), not data.

Which jobs a caller sees (``job_scope``): a data admin every job; a collection admin their own and
every job on a store whose ``administrators`` include them; anyone else their own. A job outside
the caller's scope answers 404, never 403, so job ids cannot be probed.

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


_DATA_ROLES = frozenset({Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN})

POLICIES: dict[str, frozenset[Role]] = {
    "dts": _DATA_ROLES | {Role.SERVICE_USER},
    "catalogue": _DATA_ROLES | {Role.SERVICE_USER},
    "tape": _DATA_ROLES | {Role.SERVICE_USER},
    "task_status": _DATA_ROLES,
    "jobs_submit": _DATA_ROLES,
    "jobs_read": _DATA_ROLES,
    "jobs_control": _DATA_ROLES,
    "tasks": _DATA_ROLES,
}

# Policies that need no token at all: the API description and the tape discovery document.
PUBLIC_POLICIES = frozenset({"docs", "tape_discovery"})


class JobScope(StrEnum):
    ALL = "all"
    ADMINISTERED_STORES = "administered-stores"
    OWN = "own"


def remember_roles(user, group_names) -> frozenset[str]:
    """Sets the user's roles from their group names (read by whoever loaded the user, e.g. in
    the same query as the token) and returns them."""
    roles = frozenset(group_names)
    if user.is_superuser:
        roles |= {Role.DATA_ADMIN}
    user._staging_roles = roles
    return roles


def roles_of(user) -> frozenset[str]:
    """The user's roles, cached on the user object for the rest of the request."""
    cached = getattr(user, "_staging_roles", None)
    if cached is None:
        cached = remember_roles(user, user.groups.values_list("name", flat=True))
    return cached


def allowed(user, policy: str) -> bool:
    if policy in PUBLIC_POLICIES:
        return True
    if user is None or not user.is_authenticated:
        return False
    return bool(roles_of(user) & POLICIES[policy])


def job_scope(user) -> JobScope:
    roles = roles_of(user)
    if Role.DATA_ADMIN in roles:
        return JobScope.ALL
    if Role.COLLECTION_ADMIN in roles:
        return JobScope.ADMINISTERED_STORES
    return JobScope.OWN


def sees_all_jobs(user) -> bool:
    return job_scope(user) == JobScope.ALL


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
            "staging.add_accountlimits",
            "staging.change_accountlimits",
            "staging.delete_accountlimits",
            "staging.view_accountlimits",
            # A tape store's simulated library and recall scheduler, an inline of its page.
            "staging.add_tapelibrary",
            "staging.change_tapelibrary",
            "staging.delete_tapelibrary",
            "staging.view_tapelibrary",
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
            "staging.view_tapelibrary",
            "django_celery_results.view_taskresult",
            # Webhooks: switch an endpoint off; change_webhookdelivery is what "send again" needs.
            "staging.view_webhookendpoint",
            "staging.change_webhookendpoint",
            "staging.view_webhookdelivery",
            "staging.change_webhookdelivery",
        }
    ),
}
