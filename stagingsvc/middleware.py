"""Requests refused before any view sees them."""

from stagingsvc.exceptions import nul_byte_problem


class RejectNulBytesMiddleware:
    """A NUL byte in the URL (``?storeID=a%00b``) is the client's error: answer 400 naming the
    parameter, rather than let it reach PostgreSQL, which stores no NUL in text and would fail
    the query with a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            return nul_byte_problem(request, "the URL path")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return nul_byte_problem(request, f"the query parameter {name!r}", field=name)
        return self.get_response(request)
