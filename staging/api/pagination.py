"""Cursor pagination of the API v1 listings: stable under inserts, no page counts."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination as DRFCursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

INVALID_CURSOR = (
    "Not a cursor this listing gave out; follow the next or previous link of a page as it is, "
    "or leave the cursor out for the first page."
)


class CursorPagination(DRFCursorPagination):
    """DRF's cursor pagination, with a tampered cursor a 400 naming the parameter. DRF answers a
    cursor it cannot decode with a 404 and trusts the position inside one that it can: a
    position that is no value of the ordering column (``p=abc`` for an integer id) would fail
    in the database, a 500."""

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from exc
        if cursor is not None and cursor.position is not None:
            self._check_position(cursor.position)
        return cursor

    def _check_position(self, position: str) -> None:
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        field = self.model._meta.get_field(ordering.lstrip("-"))
        try:
            value = field.to_python(position)
        except (DjangoValidationError, ValueError, TypeError, OverflowError) as exc:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from exc
        if isinstance(value, int):
            low, high = connection.ops.integer_field_range(field.get_internal_type())
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})


class JobCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ItemCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class SubJobCursorPagination(CursorPagination):
    ordering = "sequence"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class PaginatedView(APIView):
    """A view that answers one cursor-paginated page of a queryset."""

    pagination_class: type[CursorPagination]

    def paginated(self, queryset, serializer_class, context=None) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        context = {"request": self.request, **(context or {})}
        return paginator.get_paginated_response(
            serializer_class(page, many=True, context=context).data
        )
