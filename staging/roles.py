"""Roles (Django groups) and what each may do: the one place the access policy lives.

| policy        | data-admin | data-user | collection-admin | admin | service-user |
|---------------|:----------:|:---------:|:----------------:|:-----:|:------------:|
| dts           |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| catalogue     |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |
| task_status   |     ✓      |     ✓     |        ✓         |   ✗   |      ✗       |
| tape          |     ✓      |     ✓     |        ✓         |   ✗   |      ✓       |

Visibility of a job: its owner, and every data-admin. Anyone else is told 404, never 403, so
job ids cannot be probed.

``tape`` is the WLCG Tape REST API: FTS3 and gfal2 stage on behalf of users, as the DTS does.
Its discovery document (/.well-known/wlcg-tape-rest-api) is public, as at every tape site.
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
    "tape": frozenset({Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN, Role.SERVICE_USER}),
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
