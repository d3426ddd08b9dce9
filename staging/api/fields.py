"""Serializer fields shared by the API dialects (those the catalogue's task parameters use too
live in staging.catalogue.fields, and are imported from here by the dialects as well)."""

import re
import uuid
from datetime import timedelta

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from staging.catalogue.fields import FileListField, StrictStringField, iso_duration_text
from staging.errors import ServiceError
from staging.services.deadlines import DEADLINE_FORMS, deadline_parse

# What a path and one of its names may hold: an item's path column (the model's max_length) and
# Linux's NAME_MAX, counted in bytes as the filesystem counts them.
PATH_MAX_CHARS = 1024
NAME_MAX_BYTES = 255


def path_lengths_check(path: str) -> str:
    """``path`` if it fits the catalogue and the filesystem, else a ValidationError saying which
    limit it passes (a longer name would fail in the filesystem or the database: a 500)."""
    if len(path) > PATH_MAX_CHARS:
        raise serializers.ValidationError(
            f"A path may be at most {PATH_MAX_CHARS} characters; this one has {len(path)}."
        )
    for name in path.split("/"):
        if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
            raise serializers.ValidationError(
                f"A path's names (between slashes) may be at most {NAME_MAX_BYTES} bytes; "
                f"{name[:40]}… has {len(name.encode('utf-8', 'surrogatepass'))}."
            )
    return path


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# ISO 8601 durations of fixed length: weeks, days, hours, minutes, seconds (years and months
# have no fixed length). Java's Duration.parse, which dCache uses, accepts the same units.
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)


class DurationTooLong(ValueError):
    """An ISO 8601 duration well formed but beyond what a timedelta holds (``P99999999999D``)."""


def parse_iso_duration(raw: str) -> timedelta | None:
    """``PT1H`` → 1 hour, ``P7D`` → 7 days, ``P1DT12H`` …; None if ``raw`` is not one;
    DurationTooLong if it is one but too long to represent."""
    match = _ISO_DURATION.fullmatch(raw.upper()) if isinstance(raw, str) else None
    if match is None or raw.upper().endswith(("P", "T")):
        return None
    parts = {
        unit: float(value.replace(",", ".")) for unit, value in match.groupdict().items() if value
    }
    try:
        return timedelta(**parts) if parts else None
    except OverflowError as exc:  # also a float of 400 digits, which is infinity
        raise DurationTooLong(raw) from exc


@extend_schema_field({"type": "string", "format": "duration", "example": "P7D"})
class IsoDurationField(serializers.Field):
    """A positive ISO 8601 duration such as ``PT1H`` or ``P7D``."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 duration such as PT1H or P7D, not {value!r}.",
        "not_positive": "Must be longer than zero.",
        "too_long": "Is too long; a lifetime may be at most {days} days (P{days}D).",
    }

    def to_internal_value(self, data):
        try:
            duration = parse_iso_duration(data)
        except DurationTooLong:
            self.fail("too_long", days=settings.STAGING["MAX_LIFETIME"].days)
        if duration is None:
            self.fail("invalid", value=data)
        if duration <= timedelta(0):
            self.fail("not_positive")
        return duration

    def to_representation(self, value):
        return iso_duration_text(value)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "example": 7200},
            {"type": "string", "format": "duration", "example": "PT2H"},
        ]
    }
)
class DeadlineField(serializers.Field):
    """How long a job may take (``staging.services.deadlines``): whole seconds or an ISO 8601
    duration; a query string's digits are seconds too."""

    default_error_messages = {
        "null": f"May not be null: give {DEADLINE_FORMS}, or leave it out for the default.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            f"How long the job may take, from its submission: {DEADLINE_FORMS}. Files not on "
            'disk by then end FAILED with "deadline exceeded". Default: the store\'s '
            "default deadline, if it has one.",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return deadline_parse(data, field=self.field_name)
        except ServiceError as exc:
            raise serializers.ValidationError(str(exc.detail)) from exc

    def to_representation(self, value):
        return iso_duration_text(value)


def parse_job_id(raw: str | None) -> uuid.UUID:
    """A job id given as a query parameter; a missing or malformed one is a 400 naming ``id``."""
    if not raw:
        raise ServiceError("the job id is missing", field="id")
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise ServiceError(f"{raw!r} is not a valid job id (a UUID)", field="id") from exc


__all__ = [
    "DeadlineField",
    "FileListField",
    "IsoDurationField",
    "StrictStringField",
    "iso_duration_text",
    "parse_iso_duration",
    "parse_job_id",
    "path_lengths_check",
    "validated",
]
