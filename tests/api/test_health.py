"""Liveness and readiness probes."""

import pytest
from django.test import override_settings


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_and_broker_answer(client, broker):
    response = client.get("/readyz", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"}


@pytest.mark.django_db
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_readyz_is_503_and_names_the_broker_when_it_does_not_answer(client):
    response = client.get("/readyz", HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    body = response.json()
    failing = [name for name, state in body.items() if state != "OK"]
    assert len(failing) == 1
    assert failing[0].startswith("Redis(")
