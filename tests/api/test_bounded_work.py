"""Bounded work per request: MAX_FILES_PER_REQUEST caps every task in both catalogue dialects
(release included), and the submit throttle counts every request that creates a job."""

import json

import pytest

from staging.models import Job
from staging.roles import Role
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def limit(settings) -> int:
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 3}
    return 3


@pytest.mark.parametrize("task", ["release", "stage", "checksum"])
@pytest.mark.parametrize("key", ["ids", "paths"])
def test_every_task_refuses_more_files_than_the_limit_in_api_v1(api_as, store, limit, task, key):
    response = api_as(Role.DATA_USER).post(
        f"/api/v1/tasks/{task}/", {key: [f"f{n}" for n in range(limit + 1)]}, format="json"
    )

    assert_problem(response, 400, key, f"most {limit} files")
    assert not Job.objects.exists()


@pytest.mark.parametrize("task", ["release", "stage", "checksum"])
def test_every_task_refuses_more_files_than_the_limit_in_durastore(api_as, store, limit, task):
    response = api_as(Role.DATA_USER).post(
        f"/durastore/task/{task}",
        json.dumps({"paths": [f"f{n}" for n in range(limit + 1)]}),
        content_type="text/plain",
    )

    assert response.status_code == 400
    assert f"most {limit} files" in response.content.decode()
    assert not Job.objects.exists()


def test_a_durastore_body_of_one_path_a_line_is_capped_too(api_as, store, limit):
    response = api_as(Role.DATA_USER).post(
        "/durastore/task/release",
        "\n".join(f"f{n}" for n in range(limit + 1)),
        content_type="text/plain",
    )

    assert response.status_code == 400
    assert not Job.objects.exists()
