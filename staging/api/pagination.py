"""Cursor pagination of the API v1 listings: stable under inserts, no page counts."""

from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView


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
