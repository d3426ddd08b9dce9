"""Reads for the KBase DTS provider contract: files as Frictionless DataResources, the catalogue
search, and the ORCID → local user map."""

from collections.abc import Sequence
from pathlib import PurePosixPath

from django.db.models import Q

from staging.credit import credit_for
from staging.errors import NotFoundError, ServiceError
from staging.models import File, UserProfile
from staging.orcid import orcid_problem

SEARCH_DEFAULT_LIMIT = 50
SEARCH_MAX_LIMIT = 1000
SEARCH_MAX_WORDS = 16
SEARCH_MAX_QUERY_LENGTH = 1024
# Deeper pages than this are not a search a person pages through (and the database's OFFSET is
# a 64-bit number).
SEARCH_MAX_OFFSET = 1_000_000_000


def data_resource(file: File) -> dict:
    """A Frictionless DataResource as the DTS reads it: ``path`` relative to the staging-area
    root; ``hash`` always a string, because the DTS hands it to Globus as an MD5 (a missing one
    stops its transfer): the MD5 hex, or "" when the catalogue has none. The media type is given
    in both spellings, Frictionless ``mediatype`` and the guide's example's ``media_type``.
    ``file.store`` must be loaded (select_related) by the caller."""
    name = PurePosixPath(file.path).name
    stem, _, extension = name.partition(".")
    own = file.metadata or {}
    return {
        "id": file.id,
        "name": "".join(c if c.isalnum() or c in "-._" else "_" for c in stem.lower()) or "file",
        "path": file.path,
        "format": extension.lower(),
        "mediatype": file.media_type,
        "media_type": file.media_type,
        "bytes": file.size,
        "hash": file.md5 or "",
        "credit": credit_for(
            identifier=file.id, store_credit=file.store.credit, file_credit=own.get("credit")
        ),
        "sources": list(own.get("sources", file.store.sources)),
    }


def search_words(query: str | None) -> list[str]:
    """The words of a search query, refused with a reason when there is nothing to search for."""
    if query is None or not query.strip():
        raise ServiceError(
            "query is empty: give one or more words, e.g. ?query=genome fasta", field="query"
        )
    if "\x00" in query:
        # PostgreSQL text cannot hold NUL: refused here rather than failing in the database.
        raise ServiceError("query may not contain NUL characters (%00)", field="query")
    if len(query) > SEARCH_MAX_QUERY_LENGTH:
        raise ServiceError(
            f"query is {len(query)} characters long; at most {SEARCH_MAX_QUERY_LENGTH}",
            field="query",
        )
    # Case is left to the database (UPPER on both sides), so a word matches as the index sees it.
    words = list(dict.fromkeys(query.split()))
    if len(words) > SEARCH_MAX_WORDS:
        raise ServiceError(
            f"query has {len(words)} words; at most {SEARCH_MAX_WORDS}", field="query"
        )
    return words


def _page_number(raw: str | None, *, name: str, default: int, lowest: int, highest: int) -> int:
    if raw is None:
        return default
    text = raw.strip()
    value = int(text) if text.isascii() and text.isdigit() else None
    if value is None or not lowest <= value <= highest:
        raise ServiceError(
            f"{name} must be a whole number from {lowest} to {highest}, not {raw!r}", field=name
        )
    return value


def search_page(*, limit: str | None, offset: str | None) -> tuple[int, int]:
    """``limit`` (default 50, 1 to 1000) and ``offset`` (default 0) of a search request."""
    return (
        _page_number(
            limit, name="limit", default=SEARCH_DEFAULT_LIMIT, lowest=1, highest=SEARCH_MAX_LIMIT
        ),
        _page_number(offset, name="offset", default=0, lowest=0, highest=SEARCH_MAX_OFFSET),
    )


def files_search(*, words: Sequence[str], limit: int, offset: int) -> list[File]:
    """Files present in their archive whose path contains every word, case-insensitively (a
    file's name is the last part of its path, so a word in the name is in the path), in a
    stable order: by store, then path. One query; on PostgreSQL the trigram index on
    UPPER(path) (migration 0007) finds the candidates."""
    condition = Q(present=True)
    for word in words:
        condition &= Q(path__icontains=word)
    return list(
        File.objects.filter(condition)
        .select_related("store")
        .order_by("store_id", "path")[offset : offset + limit]
    )


def orcid_username_get(*, orcid: str) -> str:
    """The username of the active user holding ``orcid``; a malformed ORCID is a 400, an ORCID
    nobody holds a 404."""
    if problem := orcid_problem(orcid):
        raise ServiceError(problem, field="orcid")
    username = (
        UserProfile.objects.filter(orcid=orcid, user__is_active=True)
        .values_list("user__username", flat=True)
        .first()
    )
    if username is None:
        raise NotFoundError(f"no user of this service has the ORCID {orcid}", field="orcid")
    return username
