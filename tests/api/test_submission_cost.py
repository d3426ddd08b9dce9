"""What submitting a job costs the database and the broker: a handful of queries whatever its
size, and, when the dispatcher hands its sub-jobs out, their messages in one broker round
trip."""

import re

import pytest
import redis.client
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from bench.submission import catalogue_seed
from staging.models import File, Item, Job, JobStatus, Pin, SubJob
from staging.roles import Role
from staging.services.dispatch import subjobs_dispatch
from staging.services.job_rows import SORT_ROWS_IN_DEFAULT, sort_memory_ensure

pytestmark = pytest.mark.django_db

# The catalogue lookup, BEGIN (a savepoint in a test), the owner's lock and active work, the
# store's lock, the job, its sub-jobs, items and pins, COMMIT; after it, one read of what is in
# flight (is a store full, so that running sub-jobs must give way?). (Twelve before the rows
# were written by the database; the dispatcher, woken on commit, records the task ids.) A job
# of one sub-job that its submission hands out reads its owner's limit fresh and records the
# hand-out instead of the read after commit: one more.
QUERIES_PER_SUBMISSION = 12


def submit(client, file_ids, capture_callbacks):
    with CaptureQueriesContext(connection) as queries, capture_callbacks(execute=True):
        response = client.post("/dts/staging", {"ids": file_ids}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(uuid=response.json()["request_id"]), queries


@pytest.mark.parametrize("count", [1, 2_500])
def test_a_job_is_submitted_in_the_same_few_queries_whatever_its_size(
    api_as, store, broker, settings, django_capture_on_commit_callbacks, count
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 50}
    ids = catalogue_seed(store, count + 1)
    client = api_as(Role.SERVICE_USER)
    submit(client, ids[-1:], django_capture_on_commit_callbacks)  # the token is checked once
    ids = ids[:-1]

    job, queries = submit(client, ids, django_capture_on_commit_callbacks)

    assert len(queries) <= QUERIES_PER_SUBMISSION, "\n".join(q["sql"][:90] for q in queries)
    items = list(
        Item.objects.filter(job=job).order_by("pk").values_list("file_id", "subjob__sequence")
    )
    assert [file_id for file_id, _ in items] == ids
    assert [sequence for _, sequence in items] == [p // 50 + 1 for p in range(count)]
    assert Pin.objects.filter(job=job).count() == count
    subjobs = SubJob.objects.filter(job=job)
    assert subjobs.count() == (count + 49) // 50
    assert set(subjobs.values_list("status", flat=True)) == {JobStatus.NOT_STARTED}
    if count == 1:  # one sub-job, nothing else waiting: handed out by its submission
        assert not subjobs.filter(celery_task_id="").exists()
    else:
        assert not subjobs.exclude(celery_task_id="").exists()  # waiting for the dispatcher


def test_the_dispatcher_hands_a_jobs_sub_jobs_to_the_broker_in_one_round_trip(
    api_as, store, broker, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 1, "DISPATCH_MAX_IN_FLIGHT": 100}
    ids = catalogue_seed(store, 30)
    client = api_as(Role.SERVICE_USER)
    job, _ = submit(client, ids, django_capture_on_commit_callbacks)
    pipelines = []
    real_execute = redis.client.Pipeline.execute

    def execute(self, *args, **kwargs):
        pipelines.append(len(self.command_stack))
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)

    assert subjobs_dispatch() == 30

    # One pipeline carries every message (others are the connection's queue declarations).
    assert len([n for n in pipelines if n >= 30]) == 1, pipelines
    assert sum(n for n in pipelines if n < 30) < 10, pipelines
    assert broker.llen(f"{settings.BROKER_KEY_PREFIX}staging") == 30
    assert not SubJob.objects.filter(job=job, celery_task_id="").exists()


# A request whose files are the body (NDJSON or a JSON array, or the tape API's NDJSON) is read
# as it comes: its names are copied into the database and resolved by one join with the
# catalogue, whichever API reads it, so nothing grows with the request.
CHUNK = 500


def queries_of(post, capture_callbacks):
    """The queries of ``post``, with those run once its transaction commits."""
    with CaptureQueriesContext(connection) as queries, capture_callbacks(execute=True):
        response = post()
    assert response.status_code in (201, 202), response.content
    return response, [q["sql"] for q in queries]


def per_chunk(queries: list[str]) -> tuple[int, int, int]:
    """The catalogue reads, the COPYs, and the other queries."""
    catalogue = sum(1 for sql in queries if re.search(r'(FROM|JOIN) "?staging_file"?\s', sql))
    copies = sum(1 for sql in queries if sql.startswith("COPY "))
    return catalogue, copies, len(queries) - catalogue - copies


def test_a_streamed_request_reads_the_catalogue_once_and_writes_in_a_few_queries(
    api_as, store, broker, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("staging.services.job_rows.ROWS_CHUNK", CHUNK)
    ids = catalogue_seed(store, 2_501)
    client = api_as(Role.DATA_USER)

    def post(names):
        body = b"".join(b'"' + name.encode() + b'"\n' for name in names)
        return client.post("/api/v1/jobs/", body, content_type="application/x-ndjson")

    queries_of(
        lambda: post(ids[-1:]), django_capture_on_commit_callbacks
    )  # the token is checked once
    _, one = queries_of(lambda: post(ids[:1]), django_capture_on_commit_callbacks)
    response, many = queries_of(lambda: post(ids[:2_500]), django_capture_on_commit_callbacks)

    # One catalogue read and one COPY whatever the size; the rest does not grow either (a
    # one-file job's hand-out at submission costs its fresh read of the owner's limit).
    assert per_chunk(many)[:2] == per_chunk(one)[:2] == (1, 1)
    assert per_chunk(many)[2] <= per_chunk(one)[2]
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert (
        list(Item.objects.filter(job=job).order_by("pk").values_list("file_id", flat=True))
        == (ids[:2_500])
    )
    assert Pin.objects.filter(job=job).count() == 2_500


def test_a_streamed_tape_stage_of_catalogued_paths_reads_the_catalogue_once(
    client_for, store, broker, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("staging.services.job_rows.ROWS_CHUNK", CHUNK)
    catalogue_seed(store, 2_500)
    paths = list(File.objects.filter(store=store).order_by("path").values_list("path", flat=True))
    client = client_for(Role.DATA_USER)

    def stage(names):
        body = b"".join(b'"/' + name.encode() + b'"\n' for name in names)
        return client.post("/tape/api/v1/stage", body, content_type="application/x-ndjson")

    queries_of(
        lambda: stage(paths[-1:]), django_capture_on_commit_callbacks
    )  # the token is checked once
    _, one = queries_of(lambda: stage(paths[:1]), django_capture_on_commit_callbacks)
    response, many = queries_of(lambda: stage(paths), django_capture_on_commit_callbacks)

    # One catalogue read and one COPY whatever the size; the rest does not grow either (a
    # one-file job's hand-out at submission costs its fresh read of the owner's limit).
    assert per_chunk(many)[:2] == per_chunk(one)[:2] == (1, 1)
    assert per_chunk(many)[2] <= per_chunk(one)[2]
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert job.files_total == 2_500
    assert not Item.objects.filter(job=job).exclude(status=JobStatus.NOT_STARTED).exists()


def test_a_jobs_sub_jobs_are_numbered_and_sized_in_request_order(
    api_as, store, broker, settings, django_capture_on_commit_callbacks
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 40}
    ids = catalogue_seed(store, 100)
    job, _ = submit(api_as(Role.SERVICE_USER), ids, django_capture_on_commit_callbacks)

    subjobs = SubJob.objects.filter(job=job).order_by("sequence")
    assert [(s.sequence, s.files_total, s.bytes_total) for s in subjobs] == [
        (1, 40, 40 * 1024),
        (2, 40, 40 * 1024),
        (3, 20, 20 * 1024),
    ]
    assert [s.pk for s in subjobs] == sorted(s.pk for s in subjobs)


def test_a_large_request_sorts_its_rows_in_memory_and_never_lowers_the_servers_setting():
    def work_mem_kb() -> int:
        cursor.execute("SELECT pg_size_bytes(current_setting('work_mem')) / 1024")
        return cursor.fetchone()[0]

    with transaction.atomic(), connection.cursor() as cursor:
        before = work_mem_kb()
        sort_memory_ensure(cursor, SORT_ROWS_IN_DEFAULT)
        assert work_mem_kb() == before
        sort_memory_ensure(cursor, 1_000_000)
        assert work_mem_kb() == 250_000
        cursor.execute("SET LOCAL work_mem = '600MB'")
        sort_memory_ensure(cursor, 1_000_000)
        assert work_mem_kb() == 600 * 1024
