"""The role matrix of staging.roles over every endpoint: the roles a policy names get through,
every other role gets 403, and every API view names a policy."""

import re
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from staging.api.permissions import RolePolicy, policy_for
from staging.models import JobStatus
from staging.roles import POLICIES, PUBLIC_POLICIES, Role
from tests.api.helpers import make_job

pytestmark = pytest.mark.django_db

X = JobStatus.FAILED

# (method, url, body): {id} is a failed job of the caller with one sub-job.
ENDPOINTS = {
    "dts": [("get", "/dts/staging?id={id}", None), ("get", "/dts/resources?ids=a", None)],
    "catalogue": [("get", "/api/v1/files/", None)],
    "task_status": [
        ("get", "/api/v1/task_status/{id}", None),
        ("get", "/api/v1/task_status/{id}/peek", None),
    ],
    "jobs_submit": [("post", "/api/v1/jobs/", {"paths": ["gone.txt"]})],
    "jobs_read": [
        ("get", "/api/v1/jobs/", None),
        ("get", "/api/v1/jobs/{id}/", None),
        ("get", "/api/v1/jobs/{id}/items/", None),
        ("get", "/api/v1/jobs/{id}/result", None),
        ("get", "/api/v1/jobs/{id}/subjobs/", None),
        ("get", "/api/v1/jobs/{id}/subjobs/1/status", None),
        ("get", "/api/v1/jobs/{id}/subjobs/1/result", None),
        ("get", "/dmi/v1/dataJob/{id}/dataProducerJob/1/status?dataProducerId=primary", None),
        (
            "get",
            "/dmi/v1/dataJob/{id}/dataProducerJob/1/result?dataProducerId=primary&destination=t",
            None,
        ),
    ],
    "jobs_control": [
        ("post", "/api/v1/jobs/{id}/retry", None),
        ("post", "/api/v1/jobs/{id}/release", None),
        ("post", "/api/v1/jobs/{id}/cancel", None),
    ],
}
CASES = [
    (policy, method, url, body, role)
    for policy, calls in ENDPOINTS.items()
    for method, url, body in calls
    for role in Role
]


@pytest.mark.parametrize(("policy", "method", "url", "body", "role"), CASES)
def test_each_role_gets_through_exactly_where_its_policy_says(
    api_as, store, policy, method, url, body, role
):
    client = api_as(role)
    job = make_job(owner=client.user, store=store, status=X, items={"a.txt": X})
    response = getattr(client, method)(url.format(id=job.uuid), body, format="json")
    if role in POLICIES[policy]:
        assert response.status_code not in (401, 403), response.content
        assert response.status_code < 500
    else:
        assert response.status_code == 403, response.content


def _api_views(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if "admin" not in str(entry.pattern):
                yield from _api_views(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "view_class", None) or getattr(
                entry.callback, "cls", None
            )
            if view is not None and hasattr(view, "permission_classes"):
                yield prefix + str(entry.pattern), view


def test_every_api_view_names_a_policy_of_the_role_table():
    views = list(_api_views(get_resolver().url_patterns))
    assert len(views) >= 19
    for route, view in views:
        assert RolePolicy in view.permission_classes, route
        for method in ("GET", "POST"):
            if hasattr(view, method.lower()):
                assert policy_for(view, method) in POLICIES.keys() | PUBLIC_POLICIES, route


def test_the_schema_and_docs_need_no_token(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_the_documented_role_table_is_the_policy_table():
    page = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = page.split("## Who may do what", 1)[1].split("\n### ", 1)[0]
    header, *rows = [line for line in section.splitlines() if line.startswith("| ")]
    roles = [cell.strip() for cell in header.strip("|").split("|")[1:]]
    documented = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        policy = re.search(r"\(`?(?:policy )?`?(\w+)`\)", cells[0]).group(1)
        documented[policy] = {
            role for role, mark in zip(roles, cells[1:], strict=False) if mark == "✓"
        }
    assert {policy: {str(r) for r in allowed} for policy, allowed in POLICIES.items()} == {
        policy: allowed for policy, allowed in documented.items() if policy in POLICIES
    }
    assert set(documented) == set(POLICIES) | PUBLIC_POLICIES
