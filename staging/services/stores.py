"""Writes to the list of stores (storage providers)."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from staging.credit import credit_problems, sources_problems
from staging.errors import ConflictError, ServiceError
from staging.models import Store, StoreKind
from staging.space import validate_space


def _root(raw: str, name: str) -> Path:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise ServiceError(f"{name} {raw!r} contains a control character", field=name)
    path = Path(raw)
    if not path.is_absolute():
        raise ServiceError(f"{name} must be an absolute path, not {raw!r}", field=name)
    # Resolved, so that neither ".." nor a symlink under an allowed base leads out of it.
    resolved = path.resolve()
    bases = [Path(base).resolve() for base in settings.STORE_ROOTS_ALLOWED]
    if not any(resolved != base and resolved.is_relative_to(base) for base in bases):
        raise ServiceError(
            f"{name} {str(resolved)!r} is not under an allowed base directory "
            f"({', '.join(map(str, bases)) or 'none configured'}); choose a directory below "
            "one of them or add its parent to STORE_ROOTS_ALLOWED",
            field=name,
        )
    return resolved


def store_roots_validate(*, archive_root: str, staging_root: str) -> tuple[Path, Path]:
    """The two roots of a store, resolved, or a ServiceError naming the wrong one. Every path
    that writes roots (``store_create``, the admin's store form) asks this one function: each
    must be absolute, strictly below a base directory of ``STORE_ROOTS_ALLOWED`` once symlinks
    and ".." are resolved (an archive root of /etc/stagingsvc would stage the service's own
    secrets), and neither may contain the other: a scan of the archive would index staged
    copies, or staging would write into the archive."""
    archive = _root(archive_root, "archive_root")
    staging = _root(staging_root, "staging_root")
    if archive == staging or archive.is_relative_to(staging) or staging.is_relative_to(archive):
        raise ServiceError(
            f"the archive root {archive} and the staging root {staging} may not contain one "
            "another",
            field="staging_root",
        )
    return archive, staging


@transaction.atomic
def store_create(
    *,
    slug: str,
    archive_root: str,
    staging_root: str,
    kind: str = StoreKind.POSIX,
    primary: bool = False,
    hard_link: bool = False,
    description: str = "",
    simulated_latency_ms: int = 0,
    credit: dict | None = None,
    sources: list | None = None,
    max_active: int | None = None,
    default_deadline: timedelta | None = None,
) -> Store:
    """Add a store with both roots on disk (created if missing), checked by
    ``store_roots_validate``. With ``primary``, it becomes the primary store in place of the
    old one. ``credit`` and ``sources`` are the DTS metadata every file of the store carries."""
    if not slug or slugify(slug) != slug:
        raise ServiceError(
            f"{slug!r} is not a valid store id (lowercase letters, digits, - and _)", field="slug"
        )
    if kind not in StoreKind.values:
        raise ServiceError(
            f"unknown store kind {kind!r}; choose one of {', '.join(StoreKind.values)}",
            field="kind",
        )
    if simulated_latency_ms < 0:
        raise ServiceError("the simulated latency cannot be negative", field="latency")
    _check_max_active(max_active)
    credit, sources = credit or {}, sources or []
    for field, problems in (
        ("credit", credit_problems(credit)),
        ("sources", sources_problems(sources)),
    ):
        if problems:
            raise ServiceError("; ".join(problems), field=field)
    archive, staging = store_roots_validate(archive_root=archive_root, staging_root=staging_root)
    if Store.objects.filter(slug=slug).exists():
        raise ConflictError(f"store {slug} already exists", field="slug")
    archive.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    if primary:
        Store.objects.select_for_update().filter(is_primary=True).update(is_primary=False)
    return Store.objects.create(
        slug=slug,
        kind=kind,
        archive_root=str(archive),
        staging_root=str(staging),
        is_primary=primary or not Store.objects.filter(is_primary=True).exists(),
        hard_link=hard_link,
        description=description,
        simulated_latency_ms=simulated_latency_ms,
        credit=credit,
        sources=sources,
        max_active=max_active,
        default_deadline=default_deadline,
    )


def _check_max_active(max_active: int | None) -> None:
    if max_active is not None and max_active < 1:
        raise ServiceError(
            "max_active must be at least 1 (leave it out for no limit)", field="max_active"
        )


def store_limit_set(
    *,
    slug: str,
    max_active: int | object | None = ...,
    free_space: tuple[str, str] | None = None,
    default_deadline: timedelta | object | None = ...,
) -> Store:
    """Set how many sub-jobs of a store workers may run at once (None: no limit), its staging
    area's free-space watermarks (low, high; blank: none) and/or the deadline of its requests
    that name none (None: no deadline; jobs created from then on). The dispatcher reads them at
    its next pass: no restart. What is not given stays as it is."""
    changes: dict = {}
    if default_deadline is not ...:
        changes["default_deadline"] = default_deadline
    if max_active is not ...:
        _check_max_active(max_active)
        changes["max_active"] = max_active
    if free_space is not None:
        for name, text in zip(("free_space_low", "free_space_high"), free_space, strict=True):
            if text:
                try:
                    validate_space(text)
                except ValidationError as exc:
                    raise ServiceError(exc.messages[0], field=name) from exc
            changes[name] = text
    if not Store.objects.filter(slug=slug).update(**changes):
        raise ServiceError(f"no store {slug}", field="slug")
    return Store.objects.get(slug=slug)
