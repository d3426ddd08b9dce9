"""A bounded schemathesis run over our own OpenAPI schema against the WSGI application: no call
may answer 5xx, and every answer must match what the schema says (status code, media type,
headers, body).

The schema is loaded when the module is collected (the schema view needs no database); each
operation's test then runs inside its own test transaction with a token and a finished job."""

import json
import uuid

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from staging.models import Job, JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from tests.api.helpers import make_job

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Path parameters naming a job: most generated values are replaced by a job that exists.
JOB_PARAMETERS = ("job_id", "requestId")


@schemathesis.serializer("application/x-ndjson")
def ndjson_body(ctx, value) -> bytes:
    """The files as NDJSON, as a client streams them: a generated string is the body as it is,
    anything else one JSON value a line."""
    if isinstance(value, str):
        return value.encode()
    values = value if isinstance(value, list) else [value]
    return "".join(json.dumps(v) + "\n" for v in values).encode()


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def connection_kept_open():
    """The WSGI handler closes the database connection after each request; the test's
    transaction lives on that connection, so keep it open (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(db, connection_kept_open, store, archive_files) -> tuple[str, Job]:
    # run1/reads.fastq is the file of the request examples in the schema.
    archive_files({"a.txt": b"alpha", "run1/reads.fastq": b"@r1\nACGT\n"})
    token = token_create(username="fuzzer", role=Role.DATA_ADMIN)
    owner = get_user_model().objects.get(username="fuzzer")
    job = make_job(
        owner=owner, store=store, status=JobStatus.FINISHED, items={"a.txt": JobStatus.FINISHED}
    )
    return token, job


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, seeded):
    token, job = seeded
    for name in JOB_PARAMETERS:
        value = (case.path_parameters or {}).get(name)
        if isinstance(value, str) and _is_uuid(value):
            case.path_parameters[name] = str(job.uuid)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
