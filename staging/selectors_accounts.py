"""Reads about accounts: the limits that hold for a user (``AccountLimits`` rows set in the
admin, then the settings), cached briefly because every API request asks; what the user has in
flight; and whom a user may act on in the admin."""

from dataclasses import dataclass, fields

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.expressions import ArraySubquery
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import JSONObject
from rest_framework.settings import api_settings

from staging.models import ACTIVE_STATUSES, AccountLimits, Job
from staging.roles import remember_roles, roles_of
from staging.token_cache import token_cache

# Outside an API request (whose authentication reads the rows with the token), a user's rows
# are read from the database at most this often; an admin change bumps the version, so it
# applies at the next call of every process that shares the cache.
ROWS_CACHE_SECONDS = 30
_VERSION_KEY = "account-limits:version"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limits:
    """What holds for one user; None: no limit."""

    request_rate: str | None
    submit_rate: str | None
    max_active_jobs: int | None
    max_active_files: int | None
    max_active_bytes: int | None
    max_concurrent_scans: int | None
    max_active_subjobs: int | None
    dispatch_weight: int | None


LIMIT_NAMES = tuple(f.name for f in fields(Limits))


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """ "120/min" → (120, 60); None or "" → no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _UNITS[period.strip()[:1].lower()]


def _generosity(name: str, value) -> float:
    """Order of values of one limit, larger is more generous; None (no limit) is the most."""
    if value is None:
        return float("inf")
    if name.endswith("_rate"):
        count, seconds = parse_rate(value)
        return count / seconds
    return value


def _most_generous(name: str, values: list):
    return max(values, key=lambda v: _generosity(name, v))


def limit_rows_of(user) -> QuerySet:
    """The AccountLimits rows that bear on a user (``user``: a user or an ``OuterRef`` to one):
    its own and its roles'."""
    return AccountLimits.objects.filter(Q(user=user) | Q(role__user=user))


def limit_rows_as_json(user) -> ArraySubquery:
    """``limit_rows_of`` as an array of JSON objects, for reading with the user in one query
    (``remember_limit_rows``)."""
    fields = {"user_id": "user_id", **{name: name for name in LIMIT_NAMES}}
    return ArraySubquery(limit_rows_of(user).order_by().values(row=JSONObject(**fields)))


def _split(rows) -> tuple[dict | None, list[dict]]:
    own, roles = None, []
    for row in rows:
        set_fields = {n: row[n] for n in LIMIT_NAMES if row[n] not in (None, "")}
        if row["user_id"] is not None:
            own = set_fields
        else:
            roles.append(set_fields)
    return own, roles


def roles_and_limit_rows_readable() -> bool:
    """Whether the database reads a user's roles and limit rows with the user as arrays
    (PostgreSQL; SQLite, the embedded default, has no array subqueries)."""
    return connection.vendor == "postgresql"


def roles_and_limit_rows(user) -> dict:
    """Annotations (``group_names``, ``limit_rows``) that read a user's roles and limit rows in
    the query that reads the user or its token (``user``: an ``OuterRef`` to the user); keep
    them with ``remember_roles_and_limit_rows``."""
    return {
        "group_names": ArraySubquery(Group.objects.filter(user=user).values("name")),
        "limit_rows": limit_rows_as_json(user),
    }


def remember_roles_and_limit_rows(user, annotated) -> None:
    """Keeps on ``user`` what ``roles_and_limit_rows`` read on ``annotated`` (the user itself or
    its token), so ``roles_of`` and ``limits_of`` ask nothing more."""
    remember_roles(user, annotated.group_names)
    remember_limit_rows(user, annotated.limit_rows)


def remember_limit_rows(user, rows: list[dict]) -> None:
    """Keeps on the user object the rows read with it (``limit_rows_as_json``), so ``limits_of``
    asks neither the database nor the cache for them."""
    user._staging_limit_rows = _split(rows)


def _rows(user) -> tuple[dict | None, list[dict]]:
    """The user's own row and its roles' rows, as dicts of the fields that are set."""
    remembered = getattr(user, "_staging_limit_rows", None)
    if remembered is not None:
        return remembered
    version = cache.get(_VERSION_KEY, 0)
    key = f"account-limits:{version}:{user.pk}"
    cached = cache.get(key)
    if cached is None:
        cached = _split(limit_rows_of(user).values("user_id", *LIMIT_NAMES))
        cache.set(key, cached, ROWS_CACHE_SECONDS)
    return cached


def account_limits_changed() -> None:
    """Forget every cached row (call after any AccountLimits row is saved or deleted): in the
    shared cache at once, in other processes' token memory within AUTH_CACHE_SECONDS."""
    cache.set(_VERSION_KEY, cache.get(_VERSION_KEY, 0) + 1, None)
    token_cache.clear()


def limits_of(user) -> Limits:
    """Per field: the user's own row; else the most generous of its roles' rows; else the most
    generous of its roles' defaults in ``ACCOUNT_LIMITS["ROLES"]``; else the site default
    (``ACCOUNT_LIMITS["DEFAULT"]``, the rates from REST_FRAMEWORK's throttle rates)."""
    own, role_rows = _rows(user)
    role_defaults = settings.ACCOUNT_LIMITS["ROLES"]
    configured = [role_defaults[r] for r in roles_of(user) if r in role_defaults]
    site = {
        **settings.ACCOUNT_LIMITS["DEFAULT"],
        "request_rate": api_settings.DEFAULT_THROTTLE_RATES.get("user") or None,
        "submit_rate": api_settings.DEFAULT_THROTTLE_RATES.get("submit") or None,
    }
    resolved = {}
    for name in LIMIT_NAMES:
        if own and name in own:
            resolved[name] = own[name]
        elif from_rows := [row[name] for row in role_rows if name in row]:
            resolved[name] = _most_generous(name, from_rows)
        elif from_settings := [d[name] for d in configured if name in d]:
            resolved[name] = _most_generous(name, from_settings)
        else:
            resolved[name] = site.get(name)
    return Limits(**resolved)


def active_work_of(owner) -> dict[str, int]:
    """What ``owner`` has in flight: jobs not yet ended, their files and bytes, and scans."""
    totals = Job.objects.filter(owner=owner, status__in=ACTIVE_STATUSES).aggregate(
        jobs=Count("pk"),
        files=Sum("files_total"),
        bytes=Sum("bytes_total"),
        scans=Count("pk", filter=Q(task="scan")),
    )
    return {key: value or 0 for key, value in totals.items()}


def account_holds_at_most(*, actor, target) -> bool:
    """Whether ``target`` holds nothing ``actor`` lacks: not a superuser unless the actor is one,
    no role (group) and no permission beyond the actor's. Only then may a non-superuser change
    the target, reset its password, delete it or mint a token acting as it: otherwise an
    ``admin`` could climb to any role by acting as someone who holds it."""
    if actor.is_superuser:
        return True
    if target.is_superuser:
        return False
    if target.pk == actor.pk:
        return True
    if not set(target.groups.values_list("pk", flat=True)) <= set(
        actor.groups.values_list("pk", flat=True)
    ):
        return False
    return target.get_all_permissions() <= actor.get_all_permissions()


def account_grantable_groups(*, actor):
    """The groups (roles) ``actor`` may give to users: all of them for a superuser, otherwise
    only the ones it holds itself, so nobody hands out more than they have."""
    if actor.is_superuser:
        return Group.objects.all()
    return actor.groups.all()
