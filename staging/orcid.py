"""ORCID identifiers (https://orcid.org): the shape and the ISO 7064 MOD 11-2 check character.
Nothing here touches the database."""

import re

from django.core.exceptions import ValidationError

ORCID_PATTERN = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
ORCID_EXAMPLE = "0000-0002-1825-0097"


def orcid_check_character(base_digits: str) -> str:
    """The check character ORCID computes over the first 15 digits (ISO 7064 MOD 11-2)."""
    total = 0
    for digit in base_digits:
        total = (total + int(digit)) * 2
    result = (12 - total % 11) % 11
    return "X" if result == 10 else str(result)


def orcid_problem(value: str) -> str | None:
    """Why ``value`` is not an ORCID, or None when it is one."""
    if not ORCID_PATTERN.match(value):
        return (
            f"{value!r} is not an ORCID: write it as four groups of four digits separated by "
            f"hyphens, the last character a digit or X, e.g. {ORCID_EXAMPLE}"
        )
    digits = value.replace("-", "")
    expected = orcid_check_character(digits[:15])
    if digits[15] != expected:
        return (
            f"{value} is not a valid ORCID: its check character is {digits[15]}, but its first "
            f"15 digits call for {expected} (ISO 7064 MOD 11-2); check it for a typing mistake"
        )
    return None


def validate_orcid(value: str) -> None:
    if value and (problem := orcid_problem(value)):
        raise ValidationError(problem)
