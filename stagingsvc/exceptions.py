"""One exception handler: every error leaves as an RFC 9457 problem (application/problem+json),
including the 404 and 500 pages Django itself answers outside the API views."""

import logging
import math
import sys
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from staging.api.authentication import CREATETOKEN
from staging.dependencies import unreachable_dependency
from staging.errors import ServiceError, validation_detail, validation_errors

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(
    request, *, status_code: int, title: str, detail: str, headers=None, **extra
) -> Response:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status_code,
        "detail": detail,
        "instance": request.path if request is not None else None,
        **{key: value for key, value in extra.items() if value not in (None, "", {}, [])},
    }
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def problem_exception_handler(exc, context):
    request = context.get("request")
    if request is not None:
        # A problem is JSON whatever the client accepts for a success (e.g. text/csv results).
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
    if isinstance(exc, RequestDataTooBig):
        return problem_response(
            request,
            status_code=413,
            title=_reason(413),
            detail=f"The request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "bytes; split the request into smaller ones.",
        )
    if isinstance(exc, ServiceError):
        return problem_response(
            request,
            status_code=exc.status_code,
            title=exc.title,
            detail=exc.detail,
            field=exc.field,
            headers=exc.headers or None,
            **exc.extra,
        )
    exc = _with_how_to_fix(exc, request)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        if isinstance(exc, exceptions.ValidationError):
            pairs = validation_errors(exc.detail)
            errors = [{"field": f, "message": m} for f, m in pairs]
            detail = validation_detail(pairs)
            fields = {f for f, _ in pairs if f}
            return problem_response(
                request,
                status_code=exc.status_code,
                title="Invalid request",
                detail=detail,
                field=fields.pop() if len(fields) == 1 else None,
                errors=errors,
                headers=headers,
            )
        return problem_response(
            request,
            status_code=exc.status_code,
            title=_reason(exc.status_code),
            detail=str(exc.detail),
            headers=headers,
        )
    dependency = unreachable_dependency(exc)
    if dependency is not None:
        logger.warning("%s unreachable: %s", dependency, exc)
        return problem_response(request, **_unavailable(dependency))
    logger.exception("unhandled error", exc_info=exc)
    return problem_response(
        request,
        status_code=500,
        title="Internal Server Error",
        detail="The server could not complete the request; the error has been logged.",
    )


def _with_how_to_fix(exc, request):
    """DRF's wording of a wrong media type or of missing credentials says what is wrong but not
    what to send; these say both (curl sends a form unless told otherwise)."""
    if isinstance(exc, exceptions.UnsupportedMediaType):
        sent = request.content_type if request is not None else ""
        return exceptions.UnsupportedMediaType(
            sent,
            detail=f"The body is {sent or 'of no media type'}; this endpoint reads JSON: send "
            "'Content-Type: application/json' with a JSON body (curl: -H 'Content-Type: "
            "application/json' -d '{...}').",
        )
    if isinstance(exc, exceptions.NotAuthenticated):
        exc.detail = (
            "No credentials were sent: send 'Authorization: Bearer <token>' (an operator "
            f"creates one with {CREATETOKEN})."
        )
    return exc


def _unavailable(dependency: str) -> dict:
    """What a client is told while the database or the broker cannot be reached: 503 (the
    request was fine, try again) with Retry-After, never a 500 that reads as a bug."""
    retry_after = settings.UNAVAILABLE_RETRY_AFTER_SECONDS
    return {
        "status_code": 503,
        "title": _reason(503),
        "detail": f"The {dependency} cannot be reached just now; the request was not carried "
        f"out. Send it again in {retry_after} seconds.",
        "headers": {"Retry-After": str(retry_after)},
        "unavailable": dependency,
    }


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _page_problem(
    request, status_code: int, detail: str, *, title: str = "", headers=None, **extra
) -> JsonResponse:
    body = {
        "type": "about:blank",
        "title": title or _reason(status_code),
        "status": status_code,
        "detail": detail,
        "instance": request.path,
        **extra,
    }
    return JsonResponse(
        body, status=status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def unavailable_response(request, dependency: str) -> JsonResponse:
    """The 503 of ``_unavailable`` outside DRF views (middleware, the admin, plain views)."""
    return _page_problem(request, **_unavailable(dependency))


def service_error_response(request, exc: ServiceError) -> JsonResponse:
    """The problem response of a ServiceError raised outside DRF views (middleware)."""
    return _page_problem(
        request,
        exc.status_code,
        exc.detail,
        title=exc.title,
        headers=exc.headers or None,
        **exc.extra,
    )


def nul_byte_problem(request, where: str, field: str | None = None) -> JsonResponse:
    """A 400 for a NUL byte in the URL (see stagingsvc.middleware), in the dialect's own error
    form: DuraStore clients read errors as text/plain, everyone else as a problem body."""
    detail = f"{where} contains a NUL byte (%00); no id, path or name holds one."
    if request.path.startswith("/durastore/"):
        return HttpResponse(detail, status=400, content_type="text/plain; charset=utf-8")
    return _page_problem(request, 400, detail, **({"field": field} if field else {}))


def page_not_found(request, exception=None) -> JsonResponse:
    """handler404: a URL that names no resource."""
    return _page_problem(request, 404, f"Nothing is at {request.path}.")


def server_error(request) -> JsonResponse:
    """handler500: an error outside the API views (a middleware, the admin, a plain view); says
    nothing about internals. Django calls it while handling the exception, so sys.exc_info()
    tells an unreachable database or broker (503) from a bug (500)."""
    dependency = unreachable_dependency(sys.exc_info()[1])
    if dependency is not None:
        return unavailable_response(request, dependency)
    return _page_problem(
        request, 500, "The server could not complete the request; the error has been logged."
    )
