"""The one error type services raise; stagingsvc.exceptions turns it into a problem response."""

from collections.abc import Sequence


class ServiceError(Exception):
    """A request the service refuses: bad input (400) unless a subclass says otherwise."""

    status_code = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}
        self.headers = headers or {}


class NotFoundError(ServiceError):
    status_code = 404
    title = "Not found"


class ConflictError(ServiceError):
    """The request is valid but clashes with the current state (a terminal job, a duplicate)."""

    status_code = 409
    title = "Conflict"


class IdempotencyKeyReusedError(ServiceError):
    """An Idempotency-Key sent again with a different request body."""

    status_code = 422
    title = "Idempotency key reused"


# A refusal lists the names it could not match so the client can fix them, but not all of
# 10,000: the first few, and how many there were.
LISTED_AT_MOST = 20


def listed_names(
    names: Sequence[str], limit: int = LISTED_AT_MOST, *, count: int | None = None
) -> str:
    """``a, b, c and 9997 more``: the first ``limit`` names for a detail or a message, and how
    many more of ``count`` (all of ``names`` unless said: a query may return only the first)."""
    more = (len(names) if count is None else count) - min(len(names), limit)
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def validation_errors(detail, prefix: str = "") -> list[tuple[str, str]]:
    """DRF validation details as (field, message) pairs: nested fields joined with dots, an
    entry of a list of objects by its position (``files[2].path``), errors of the whole object
    with no field."""
    if isinstance(detail, dict):
        pairs = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            pairs += validation_errors(
                value, f"{prefix}.{name}" if prefix and name else prefix or name
            )
        return pairs
    if isinstance(detail, list):
        pairs = []
        for position, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            pairs += validation_errors(value, f"{prefix}[{position}]" if nested else prefix)
        return pairs
    return [(prefix, str(detail))]


def validation_detail(pairs: list[tuple[str, str]]) -> str:
    """``path: This field is required.; priority: …``: the pairs as one line for a detail."""
    return "; ".join(f"{field}: {message}" if field else message for field, message in pairs)


def unknown_names(
    kind: str, names: list[str], limit: int = LISTED_AT_MOST, *, count: int | None = None
) -> dict:
    """The problem's extra members for names that matched nothing: ``unknown_<kind>`` (the
    first ``limit``) and ``unknown_<kind>_count`` (all of them: of ``names`` unless ``count``
    says, when only the first were kept)."""
    total = len(names) if count is None else count
    return {f"unknown_{kind}": names[:limit], f"unknown_{kind}_count": total}


class BusyError(ServiceError):
    """The service has no room for this request now; the client may try again later."""

    status_code = 503
    title = "Service unavailable"
