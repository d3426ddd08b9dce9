"""Amounts of disk space as operators write them: bytes (``500000000``, ``50GB``, ``2TiB``;
powers of 1024) or a share of a filesystem (``10%``)."""

import re

from django.core.exceptions import ValidationError

_SPACE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[KMGTP]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def validate_space(text: str) -> None:
    found = _SPACE.match(text)
    if found is None:
        raise ValidationError(
            f"{text!r} is not an amount of space: give bytes (50GB, 2TiB, 500000000) or a "
            "share of the filesystem (10%)."
        )
    amount, unit = found.groups()
    if unit == "%" and float(amount) > 100:
        raise ValidationError(f"{text!r} is more than the whole filesystem.")


def space_bytes(text: str, total: int) -> int:
    """``text`` in bytes, a share taken of ``total`` (the filesystem's size)."""
    amount, unit = _SPACE.match(text).groups()
    if unit == "%":
        return int(total * float(amount) / 100)
    return int(float(amount) * _UNITS[unit[:1].upper()])
