"""How a task's parameters are read: the base serializer every task's parameters extend, the
fields several tasks share (files by id or path, a lifetime), and a DuraStore body's usual
reading. (The schema our APIs list is drf-spectacular's of each serializer: staging.api.tasks.)"""

import json
from datetime import timedelta

from django.conf import settings
from rest_framework import serializers

from staging.catalogue.fields import FileListField, StrictStringField, iso_duration_text
from staging.errors import ServiceError
from staging.services.staging_jobs import staging_files_resolve
from staging.storage import UnsafePathError


class TaskParameters(serializers.Serializer):
    """Base of every task's parameters: a JSON object whose unknown keys are refused (a
    misspelt parameter must not be silently ignored). ``self.context`` holds the ``store`` and
    the ``owner`` (the user asking)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": [f"parameters must be a JSON object, not {_kind(data)}"]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {key: ["This parameter is not one this task takes."] for key in unknown}
            )
        return super().to_internal_value(data)


def _kind(value) -> str:
    return {list: "an array", str: "a string", type(None): "null"}.get(type(value), "a value")


def text_as_json_or_paths(raw: str) -> dict:
    """The usual reading of a DuraStore body: a JSON object, or one path per line (the
    simplest thing to send with curl), or nothing at all."""
    text = raw.strip()
    if not text:
        return {}
    if text[0] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServiceError(f"the body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ServiceError("the body is not valid JSON: it nests too deeply") from exc
    return {"paths": [line.strip() for line in text.splitlines() if line.strip()]}


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
        store = self.context["store"]
        try:
            attrs["files"] = staging_files_resolve(store=store, ids=ids, paths=paths)
        except UnsafePathError as exc:
            raise serializers.ValidationError({"paths": [str(exc)]}) from exc
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
            self.fail("max_value", max_value=iso_duration_text(longest))
        return lifetime

    def to_representation(self, value):
        return iso_duration_text(value)


def lifetime_text(lifetime: timedelta | None) -> str | None:
    return iso_duration_text(lifetime) if lifetime is not None else None
