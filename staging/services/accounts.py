"""Users, roles and API tokens."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from knox.models import AuthToken

from staging.errors import ServiceError
from staging.roles import Role


@transaction.atomic
def token_create(*, username: str, role: str, ttl: timedelta | None = None) -> str:
    """Create the user if needed, give it ``role``, and return a new bearer token. Only a hash
    of the token is stored: this is the one moment it can be read."""
    if role not in set(Role):
        raise ServiceError(
            f"unknown role {role!r}; choose one of {', '.join(sorted(Role))}", field="role"
        )
    user, _ = get_user_model().objects.get_or_create(username=username)
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    _, token = AuthToken.objects.create(user=user, expiry=ttl)
    return token
