"""Parameter fields several tasks share: files by id or path, a lifetime."""

from datetime import timedelta

from django.conf import settings
from django.utils.duration import duration_iso_string
from rest_framework import serializers

from staging.api.fields import FileListField, StrictStringField
from staging.errors import NotFoundError
from staging.models import File, Store
from staging.selectors import files_by_ids, files_by_paths
from staging.storage import UnsafePathError, clean_relative_path
from tasks.catalogue._base import TaskParameters


def _listed(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def files_of_store(store: Store, *, ids: list[str] | None, paths: list[str] | None) -> list[File]:
    """Catalogue entries of ``store`` named by id or by path, in the order given without
    repeats. Unknown ones (or another store's) are a 404 that lists them; paths that would leave
    the store are a 400."""
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        found = files_by_ids(ids=wanted)
        unknown = [i for i in wanted if i not in found or found[i].store_id != store.pk]
        if unknown:
            raise NotFoundError(
                f"{len(unknown)} of {len(wanted)} ids are not files of store {store.slug}: "
                f"{_listed(unknown)}",
                field="ids",
                extra={"unknown_ids": unknown},
            )
        return [found[i] for i in wanted]
    cleaned: list[str] = []
    for raw in paths or []:
        try:
            cleaned.append(clean_relative_path(raw))
        except UnsafePathError as exc:
            raise serializers.ValidationError({"paths": [str(exc)]}) from exc
    wanted = list(dict.fromkeys(cleaned))
    found = files_by_paths(store=store, paths=wanted)
    unknown = [p for p in wanted if p not in found]
    if unknown:
        raise NotFoundError(
            f"{len(unknown)} of {len(wanted)} paths are not in the catalogue of store "
            f"{store.slug} (scan it first): {_listed(unknown)}",
            field="paths",
            extra={"unknown_paths": unknown},
        )
    return [found[p] for p in wanted]


class FilesParameters(TaskParameters):
    """Files of the store, by catalogue id or by path (one of the two)."""

    ids = FileListField(
        child=StrictStringField(max_length=64),
        required=False,
        allow_empty=False,
        help_text="Catalogue ids of the files (GET /api/v1/files/ lists them).",
    )
    paths = FileListField(
        child=StrictStringField(max_length=1024),
        required=False,
        allow_empty=False,
        help_text="Paths of the files, relative to the store's archive root.",
    )

    def validate(self, attrs):
        ids, paths = attrs.get("ids"), attrs.get("paths")
        if (ids is None) == (paths is None):
            raise serializers.ValidationError("name the files by ids or by paths (one of the two)")
        attrs["files"] = files_of_store(self.context["store"], ids=ids, paths=paths)
        return attrs


class LifetimeField(serializers.DurationField):
    """An ISO 8601 duration (``P7D``, ``PT12H``) between a second and the longest pin
    (``STAGING["MAX_LIFETIME"]``, read per request so that the setting applies at once)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", timedelta(seconds=1))
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        lifetime = super().to_internal_value(data)
        longest = settings.STAGING["MAX_LIFETIME"]
        if lifetime > longest:
            self.fail("max_value", max_value=duration_iso_string(longest))
        return lifetime

    def to_representation(self, value):
        return duration_iso_string(value)


def lifetime_text(lifetime: timedelta | None) -> str | None:
    return duration_iso_string(lifetime) if lifetime is not None else None
