"""WLCG tape API discovery: GET /.well-known/wlcg-tape-rest-api."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

WELL_KNOWN = "/.well-known/wlcg-tape-rest-api"


@pytest.mark.parametrize("slash", ["", "/"])
def test_it_names_the_site_and_the_absolute_uri_of_the_v1_endpoint(settings, slash):
    settings.TAPE = {**settings.TAPE, "SITENAME": "EXAMPLE-TAPE", "DESCRIPTION": "Example tape"}
    response = APIClient().get(WELL_KNOWN + slash, HTTP_HOST="tape.example.org:8443")

    assert response.status_code == 200
    assert response.json() == {
        "sitename": "EXAMPLE-TAPE",
        "description": "Example tape",
        "endpoints": [
            {"uri": "http://tape.example.org:8443/tape/api/v1", "version": "v1", "metadata": {}}
        ],
    }


def test_it_needs_no_token_and_ignores_a_bad_one():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert client.get(WELL_KNOWN).status_code == 200


def test_x_forwarded_proto_is_ignored_unless_the_settings_trust_it(settings):
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "tape.example.org"}

    untrusted = APIClient().get(WELL_KNOWN, **forwarded).json()
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    trusted = APIClient().get(WELL_KNOWN, **forwarded).json()

    assert untrusted["endpoints"][0]["uri"] == "http://tape.example.org/tape/api/v1"
    assert trusted["endpoints"][0]["uri"] == "https://tape.example.org/tape/api/v1"
