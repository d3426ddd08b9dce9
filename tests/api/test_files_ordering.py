"""GET /api/v1/files/?prefix= pages in path order from an index, never by sorting the whole
catalogue per page."""

import pytest
from django.db import connection
from rest_framework.test import APIRequestFactory

from staging.api.files import FileCursorPagination
from staging.selectors import files_list

pytestmark = pytest.mark.django_db


def test_the_catalogue_pages_by_prefix_in_index_order_without_a_sort(store):
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's; CI runs on PostgreSQL")
    paginator = FileCursorPagination()
    request = APIRequestFactory().get("/api/v1/files/", {"prefix": "run1/"})
    from rest_framework.request import Request

    queryset = files_list(prefix="run1/")
    ordered = queryset.order_by(*paginator.get_ordering(Request(request), queryset, None))
    with connection.cursor() as cursor:
        # Whatever a tiny test table would make cheapest, may an index give the order?
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        sql, params = ordered[:101].query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Sort" not in plan, plan
    assert "file_path" in plan, plan
