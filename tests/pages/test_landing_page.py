"""GET /: a small page that tells a newcomer where everything is."""

import re

import pytest

pytestmark = pytest.mark.django_db

LINKS = [
    "/api/docs/",
    "/api/schema/",
    "/admin/",
    "/admin/dashboard/",
    "/healthz",
    "/readyz",
    "/api/v1/jobs/",
    "/api/v1/tasks/",
    "/api/v1/files/",
    "/dts/staging",
    "/durastore/task",
    "/.well-known/wlcg-tape-rest-api",
]


def test_the_root_is_a_page_linking_docs_admin_health_and_every_api_root(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    hrefs = set(re.findall(r'href="([^"]+)"', response.content.decode()))
    assert set(LINKS) <= hrefs


def test_every_link_of_the_landing_page_leads_somewhere(client):
    page = client.get("/").content.decode()
    for href in re.findall(r'href="(/[^"]*)"', page):
        # A page, or an API root that asks for a token: never a 404.
        assert client.get(href).status_code in (200, 302, 401, 503), href
