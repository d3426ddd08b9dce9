"""Refusals that say how to fix the request: the body's media type, the Authorization header's
form, a wrong or an expired token, a role that may not make the call."""

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from staging.roles import Role
from staging.services.accounts import token_create
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

CREATETOKEN = ".venv/bin/python manage.py createtoken"


def with_header(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_a_form_encoded_body_is_a_415_that_says_to_send_json(api_as, store):
    # What `curl -d 'paths=a.txt'` sends when no Content-Type is given.
    response = api_as(Role.DATA_USER).generic(
        "POST", "/api/v1/jobs/", "paths=a.txt", content_type="application/x-www-form-urlencoded"
    )
    body = assert_problem(response, 415, "Content-Type: application/json")
    assert "application/x-www-form-urlencoded" in body["detail"]


@pytest.mark.parametrize("form", ["{token}", "Token {token}", "Basic {token}"])
def test_a_token_in_another_form_is_told_to_use_bearer(store, form):
    token = token_create(username="ann", role=Role.DATA_USER)
    response = with_header(form.format(token=token)).get("/api/v1/jobs/")
    body = assert_problem(response, 401, "Authorization: Bearer <token>")
    assert "were not provided" not in body["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_authorization_header_says_how_to_get_and_send_a_token(store):
    response = APIClient().get("/api/v1/jobs/")
    assert_problem(response, 401, "Authorization: Bearer <token>", CREATETOKEN)


def test_a_wrong_token_is_told_apart_from_an_expired_one(store):
    wrong = assert_problem(with_header("Bearer not-a-token").get("/api/v1/jobs/"), 401)
    assert "not a token this service knows" in wrong["detail"]
    assert CREATETOKEN in wrong["detail"]

    token = token_create(username="ann", role=Role.DATA_USER, ttl=timedelta(hours=1))
    AuthToken.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    expired = assert_problem(with_header(f"Bearer {token}").get("/api/v1/jobs/"), 401)
    assert "expired" in expired["detail"]
    assert CREATETOKEN in expired["detail"]
    assert "not a token this service knows" not in expired["detail"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("Bearer \xff", "not a token this service knows"),
        ("Bearer \xffabc\xfe", "not a token this service knows"),
        ("\xff", "Authorization: Bearer <token>"),
    ],
)
def test_a_token_that_is_not_ascii_is_a_401_not_a_500(store, value, words):
    assert_problem(with_header(value).get("/api/v1/jobs/"), 401, words)


def test_a_refused_role_is_told_which_roles_may(api_as, store):
    response = api_as(Role.SERVICE_USER).get("/api/v1/jobs/")
    body = assert_problem(response, 403, "service-user")
    for role in ("data-admin", "data-user", "collection-admin"):
        assert role in body["detail"]
