"""Credit metadata a site attaches to its files for the KBase DTS (the KBase credit metadata
schema, as the DTS copies it into its transfer manifests) and the Frictionless ``sources`` list.

An operator sets both per store (admin, ``addstore --credit/--sources``); a file may override
them (its ``metadata``). ``identifier`` and ``resource_type`` are not set by hand: every file is
its own dataset, identified by its catalogue id. Nothing here touches the database."""

from copy import deepcopy

from django.core.exceptions import ValidationError

# The KBase credit fields a site may set, with the JSON type each must have (None: null too).
CREDIT_FIELDS: dict[str, tuple[type, ...]] = {
    "comment": (str,),
    "content_url": (str,),
    "contributors": (list, type(None)),
    "dates": (list, type(None)),
    "descriptions": (list, type(None)),
    "description": (str,),
    "funding": (list, type(None)),
    "license": (str, dict),
    "meta": (dict, type(None)),
    "publisher": (dict, type(None)),
    "related_identifiers": (list, type(None)),
    "repository": (dict,),
    "titles": (list, type(None)),
    "url": (str,),
    "version": (str,),
}
PER_FILE_CREDIT_FIELDS = ("identifier", "resource_type")
SOURCE_FIELDS = ("title", "path", "email")
FILE_METADATA_FIELDS = ("credit", "sources")

# What a file's credit holds before any site metadata: the guide's example, empty where unknown.
EMPTY_CREDIT = {
    "comment": "",
    "description": "",
    "license": "",
    "version": "",
    "contributors": [],
    "dates": [],
    "funding": None,
    "related_identifiers": None,
    "repository": {"organization_id": "", "organization_name": ""},
    "titles": None,
}

_JSON_NAMES = {str: "a string", list: "a list", dict: "an object", type(None): "null"}


def _kind(value) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def credit_problems(credit) -> list[str]:
    """What is wrong with a credit object an operator wrote (empty when nothing)."""
    if not isinstance(credit, dict):
        return [f"credit must be a JSON object, not {_kind(credit)}"]
    problems = []
    for key, value in credit.items():
        if key in PER_FILE_CREDIT_FIELDS:
            problems.append(f"credit.{key} is set for every file by the service; leave it out")
        elif key not in CREDIT_FIELDS:
            problems.append(
                f"credit.{key} is not a KBase credit field; use {', '.join(sorted(CREDIT_FIELDS))}"
            )
        elif not isinstance(value, CREDIT_FIELDS[key]):
            wanted = " or ".join(_JSON_NAMES[t] for t in CREDIT_FIELDS[key])
            problems.append(f"credit.{key} must be {wanted}, not {_kind(value)}")
    return problems


def sources_problems(sources) -> list[str]:
    if not isinstance(sources, list):
        return [f"sources must be a JSON list, not {_kind(sources)}"]
    problems = []
    for index, source in enumerate(sources):
        if not isinstance(source, dict):
            problems.append(f"sources[{index}] must be an object with {', '.join(SOURCE_FIELDS)}")
            continue
        for key, value in source.items():
            if key not in SOURCE_FIELDS:
                problems.append(
                    f"sources[{index}].{key} is not a source field; use {', '.join(SOURCE_FIELDS)}"
                )
            elif not isinstance(value, str):
                problems.append(f"sources[{index}].{key} must be a string, not {_kind(value)}")
    return problems


def file_metadata_problems(metadata) -> list[str]:
    if not isinstance(metadata, dict):
        return [f"file metadata must be a JSON object, not {_kind(metadata)}"]
    problems = [
        f"{key} is not file metadata; use {' or '.join(FILE_METADATA_FIELDS)}"
        for key in metadata
        if key not in FILE_METADATA_FIELDS
    ]
    if "credit" in metadata:
        problems += credit_problems(metadata["credit"])
    if "sources" in metadata:
        problems += sources_problems(metadata["sources"])
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValidationError(problems)


def validate_credit(value) -> None:
    _raise(credit_problems(value))


def validate_sources(value) -> None:
    _raise(sources_problems(value))


def validate_file_metadata(value) -> None:
    _raise(file_metadata_problems(value))


def credit_for(*, identifier: str, store_credit: dict, file_credit: dict | None) -> dict:
    """A file's credit: the empty template, then the store's fields, then the file's own."""
    credit = deepcopy(EMPTY_CREDIT)
    credit.update(deepcopy(store_credit or {}))
    credit.update(deepcopy(file_credit or {}))
    credit["identifier"] = identifier
    credit["resource_type"] = "dataset"
    return credit
