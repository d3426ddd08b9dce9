"""ETag and If-None-Match for the status calls: a poller that sends back the ETag it was given
gets an empty 304 while nothing changed. Django judges the request's preconditions
(``get_conditional_response``, RFC 9110 §13.2.2: weak comparison, lists, ``*``)."""

import hashlib

from django.http import HttpResponse
from django.utils.cache import get_conditional_response

# Status answers change at any moment: caches must ask again every time, and only the caller's
# own cache may keep them (they depend on the caller's token).
STATUS_CACHE_CONTROL = "private, no-cache"


def etag_for(*parts) -> str:
    """A weak validator over the values a response is made of."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def precondition_response(request, headers: dict) -> HttpResponse | None:
    """A 304 when the request's If-None-Match still holds for ``headers["ETag"]`` (Django
    judges it), else None. Asked before the full answer is built, so a 304 costs no
    serialisation. ``headers`` are those of the full answer: a 304 carries them all, beyond the
    few Django copies, because a poller reads Location and Retry-After from it too."""
    # The HttpRequest itself: through DRF's Request each header read costs a failed lookup first.
    request = getattr(request, "_request", request)
    # Most polls send no validator at all, and Django's parsing would be most of what the ETag
    # costs them. If-None-Match is the only precondition these calls take (docs/api.md): a
    # status has no modification date, so If-Unmodified-Since is to be ignored (RFC 9110
    # §13.1.4), where Django would answer 412; and If-Match compares strongly, which our weak
    # tags never pass, so Django would refuse every poll that sent one.
    if "HTTP_IF_NONE_MATCH" not in request.META:
        return None
    response = get_conditional_response(request, etag=headers["ETag"])
    if response is None or response.status_code != 304:
        return None
    for name, value in headers.items():
        response[name] = value
    return response
