"""Bearer tokens: what a client presenting a live, expired or unknown token gets."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient, APIRequestFactory

from staging.api.authentication import BearerTokenAuthentication
from staging.roles import Role
from staging.services.accounts import token_create

pytestmark = pytest.mark.django_db


def poll(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/dts/staging", {"id": "8a3bdcf3-3b07-4bfb-9b4b-4a3f3c1e0d3e"})


def stored(token: str):
    return AuthToken.objects.filter(token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH])


def expire(token: str) -> None:
    stored(token).update(expiry="2000-01-01T00:00:00Z")


def test_a_live_token_is_accepted():
    token = token_create(username="alice", role=Role.DATA_USER)
    # Authenticated and allowed: an unknown job id is a 404, not a 401.
    assert poll(token).status_code == 404


def test_an_expired_token_is_refused_and_deleted():
    token = token_create(username="alice", role=Role.DATA_USER, ttl=timedelta(hours=1))
    expire(token)

    response = poll(token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert not stored(token).exists()


def test_a_live_token_works_beside_an_expired_one_of_the_same_user():
    old = token_create(username="alice", role=Role.DATA_USER, ttl=timedelta(hours=1))
    new = token_create(username="alice", role=Role.DATA_USER)
    expire(old)

    assert poll(new).status_code == 404
    assert poll(old).status_code == 401


def test_authentication_reads_only_the_presented_token():
    token = token_create(username="alice", role=Role.DATA_USER)
    for _ in range(3):
        token_create(username="alice", role=Role.DATA_USER)
    request = APIRequestFactory().get("/dts/staging", HTTP_AUTHORIZATION=f"Bearer {token}")

    with CaptureQueriesContext(connection) as queries:
        user, _ = BearerTokenAuthentication().authenticate(request)

    assert user.username == "alice"
    assert len(queries.captured_queries) == 1
