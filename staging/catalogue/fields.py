"""Serializer fields of task parameters that the API dialects share: strict strings, a bounded
list of files, and how a duration is written back."""

from datetime import timedelta

from django.conf import settings
from rest_framework import serializers


class StrictStringField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    default_error_messages = {"not_a_string": "Must be a string, not {kind}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string", kind=type(data).__name__)
        return super().to_internal_value(data)


class FileListField(serializers.ListField):
    """A list of files (ids or paths) of at most ``STAGING["MAX_FILES_PER_REQUEST"]`` items,
    read per request: every task and dialect that names files is bounded by the one setting."""

    default_error_messages = {
        "too_many": "At most {limit} files per request; this one names {count}. Split it."
    }

    def to_internal_value(self, data):
        limit = settings.STAGING["MAX_FILES_PER_REQUEST"]
        if isinstance(data, list) and len(data) > limit:
            self.fail("too_many", limit=limit, count=len(data))
        return super().to_internal_value(data)


def iso_duration_text(value: timedelta) -> str:
    """The shortest ISO 8601 spelling in days, hours, minutes and seconds: 7 days is ``P7D``
    (as a client would have written it), 36 hours ``P1DT12H``, 90 seconds ``PT1M30S``."""
    seconds = value.total_seconds()
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    fraction = seconds - whole
    seconds_text = f"{rest + fraction:g}" if fraction else str(rest)
    clock = "".join(
        f"{amount}{unit}"
        for amount, unit in ((hours, "H"), (minutes, "M"), (seconds_text, "S"))
        if amount not in (0, "0")
    )
    text = "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
    return text if text != "P" else "PT0S"
