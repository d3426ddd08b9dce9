"""The one error type services raise; stagingsvc.exceptions turns it into a problem response."""


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
