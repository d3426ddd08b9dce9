"""Bearer-token authentication: what a request costs (expired tokens are covered beside the
other error cases in test_errors_and_limits.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.exceptions import AuthenticationFailed
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


def test_a_wrong_token_sharing_an_expired_tokens_key_neither_removes_it_nor_hears_expired():
    token = token_create(username="alice", role=Role.DATA_USER, ttl=timedelta(hours=1))
    AuthToken.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    key, rest = token[: CONSTANTS.TOKEN_KEY_LENGTH], token[CONSTANTS.TOKEN_KEY_LENGTH :]
    wrong = key + ("1" if rest[0] == "0" else "0") + rest[1:]
    request = APIRequestFactory().get("/dts/staging", HTTP_AUTHORIZATION=f"Bearer {wrong}")

    with pytest.raises(AuthenticationFailed) as refused:
        BearerTokenAuthentication().authenticate(request)

    assert refused.value.get_codes() == "authentication_failed"
    assert AuthToken.objects.count() == 1
