"""Users, roles and API tokens."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, transaction
from django.db.models import Q
from knox.models import AuthToken

from staging.errors import ConflictError, NotFoundError, ServiceError
from staging.models import UserProfile
from staging.orcid import orcid_problem
from staging.roles import ADMIN_SITE_PERMISSIONS, Role
from staging.selectors_accounts import active_work_of, limits_of


class LimitExceededError(ServiceError):
    """A new job would take its owner over one of its limits (``AccountLimits``)."""

    status_code = 429
    title = "Too Many Requests"


_WORK_LIMITS = {
    "max_active_jobs": "jobs not yet ended",
    "max_active_files": "files in jobs not yet ended",
    "max_active_bytes": "bytes in jobs not yet ended",
    "max_concurrent_scans": "scans not yet ended",
}


def account_work_admit(*, owner, files: int, size: int, task: str) -> None:
    """Refuse with a 429 (Retry-After, and the limit named) a new job that would take
    ``owner`` over one of its limits. Call inside the transaction that creates the job: the
    owner's row is locked, so two concurrent requests cannot both pass the check."""
    if owner is None:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).exists()
    limits = limits_of(owner)
    active = active_work_of(owner)
    would = {
        "max_active_jobs": active["jobs"] + 1,
        "max_active_files": active["files"] + files,
        "max_active_bytes": active["bytes"] + size,
        "max_concurrent_scans": active["scans"] + 1 if task == "scan" else 0,
    }
    for name, what in _WORK_LIMITS.items():
        limit = getattr(limits, name)
        if limit is not None and would[name] > limit:
            raise LimitExceededError(
                f"{name}: this request would take {owner.get_username()} to {would[name]} "
                f"{what}, over the limit of {limit}; wait for running jobs to end (or cancel "
                "some), or ask an operator to raise the limit",
                field=name,
                extra={"limit": name, "limit_value": limit},
                headers={"Retry-After": str(settings.ACCOUNT_LIMITS["RETRY_AFTER_SECONDS"])},
            )


@transaction.atomic
def token_create(
    *, username: str, role: str, ttl: timedelta | None = None, orcid: str | None = None
) -> str:
    """Create the user if needed, give it ``role`` (and ``orcid``, see ``user_orcid_set``), and
    return a new bearer token. Only a hash of the token is stored: this is the one moment it
    can be read. Nothing is created when the ORCID is refused."""
    if role not in set(Role):
        raise ServiceError(
            f"unknown role {role!r}; choose one of {', '.join(sorted(Role))}", field="role"
        )
    user, _ = get_user_model().objects.get_or_create(username=username)
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    if orcid is not None:
        user_orcid_set(username=username, orcid=orcid)
    _, token = AuthToken.objects.create(user=user, expiry=ttl)
    return token


@transaction.atomic
def token_issue(*, user, ttl: timedelta | None = None) -> tuple[AuthToken, str]:
    """A new bearer token for an existing user (the admin's "add token"), valid for ``ttl``
    (None: until revoked). Returns the stored row and the token, readable only now."""
    if not user.is_active:
        raise ServiceError(f"user {user.get_username()} is inactive", field="user")
    return AuthToken.objects.create(user=user, expiry=ttl)


@transaction.atomic
def roles_grant_admin_permissions() -> int:
    """Create the role groups and give each its admin-site permissions (staging.roles); run on
    every migrate. Returns how many permissions were granted that the groups lacked."""
    granted = 0
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role)
        wanted = ADMIN_SITE_PERMISSIONS.get(role, frozenset())
        if not wanted:
            continue
        query = Q()
        for name in wanted:
            app_label, codename = name.split(".", 1)
            query |= Q(content_type__app_label=app_label, codename=codename)
        missing = Permission.objects.filter(query).exclude(group=group)
        granted += len(missing)
        group.permissions.add(*missing)
    return granted


@transaction.atomic
def user_orcid_set(*, username: str, orcid: str | None) -> UserProfile:
    """Give the user ``orcid`` (None: take it away). An ORCID identifies one person, so it
    belongs to one user at most: giving it to a second user is refused, naming the first."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFoundError(f"there is no user named {username!r}", field="username")
    if orcid is not None:
        orcid = orcid.strip()
        if problem := orcid_problem(orcid):
            raise ServiceError(problem, field="orcid")
        holder = (
            UserProfile.objects.filter(orcid=orcid)
            .exclude(user=user)
            .values_list("user__username", flat=True)
            .first()
        )
        if holder is not None:
            raise ConflictError(
                f"the ORCID {orcid} already belongs to user {holder}; an ORCID identifies one "
                f"person, so take it from {holder} first (manage.py setorcid {holder} --clear)",
                field="orcid",
            )
    try:
        with transaction.atomic():
            profile, _ = UserProfile.objects.update_or_create(user=user, defaults={"orcid": orcid})
    except IntegrityError as exc:  # another request gave the ORCID away meanwhile
        raise ConflictError(
            f"the ORCID {orcid} already belongs to another user", field="orcid"
        ) from exc
    return profile
