"""Bearer-token authentication: what a request costs (expired tokens are covered beside the
other error cases in test_errors_and_limits.py)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIRequestFactory

from staging.api.authentication import BearerTokenAuthentication
from staging.roles import Role
from staging.services.accounts import token_create

pytestmark = pytest.mark.django_db


def test_authentication_reads_only_the_presented_token():
    token = token_create(username="alice", role=Role.DATA_USER)
    for _ in range(3):
        token_create(username="alice", role=Role.DATA_USER)
    request = APIRequestFactory().get("/dts/staging", HTTP_AUTHORIZATION=f"Bearer {token}")

    with CaptureQueriesContext(connection) as queries:
        user, _ = BearerTokenAuthentication().authenticate(request)

    assert user.username == "alice"
    assert len(queries.captured_queries) == 1
