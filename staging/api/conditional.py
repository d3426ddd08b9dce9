"""ETag and If-None-Match for the status calls: a poller that sends back the ETag it was given
gets an empty 304 while nothing changed."""

import hashlib

from django.http import HttpResponseNotModified
from django.utils.http import parse_etags

# Status answers change at any moment: caches must ask again every time, and only the caller's
# own cache may keep them (they depend on the caller's token).
STATUS_CACHE_CONTROL = "private, no-cache"


def etag_for(*parts) -> str:
    """A weak validator over the values a response is made of."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def not_modified(request, etag: str, headers: dict | None = None) -> HttpResponseNotModified | None:
    """A 304 when If-None-Match names ``etag`` (weak comparison, RFC 9110 §13.1.2), else None."""
    header = request.headers.get("If-None-Match", "")
    if not header:
        return None
    tags = parse_etags(header)
    if "*" not in tags and _opaque(etag) not in {_opaque(t) for t in tags}:
        return None
    response = HttpResponseNotModified()
    response["ETag"] = etag
    response["Cache-Control"] = STATUS_CACHE_CONTROL
    for name, value in (headers or {}).items():
        response[name] = value
    return response
