"""WLCG tape API: POST {uri}/stage with an NDJSON body, one entry of ``files`` a line, read as it
comes (for requests too big for one JSON body)."""

import json
from pathlib import Path

import pytest

from staging.models import Item, Job, JobStatus, Pin
from staging.roles import Role
from tests.api.helpers import assert_problem
from tests.api.tape_helpers import API, second_store

pytestmark = pytest.mark.django_db


def stage_ndjson(client, *lines):
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    return client.post(f"{API}/stage", body, content_type="application/x-ndjson")


def test_an_ndjson_body_stages_its_files_as_a_json_body_would(client_for, archive_files):
    archive_files({"run1/a.fastq": b"ACGT", "run1/b.fastq": b"TTGA"})
    client = client_for(Role.DATA_USER)

    response = stage_ndjson(
        client,
        "/run1//b.fastq",
        {"path": "/run1/a.fastq", "diskLifetime": "P2D"},
        {"path": "/run1/b.fastq"},  # named twice: staged once
        {"path": "/run1/missing.fastq"},
    )

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert (job.source, job.files_total, job.bytes_total) == ("tape", 3, 8)
    assert job.lifetime.days == 2
    assert job.parameters == {"tape": {"prefix": "", "aliases": {}}}
    items = list(job.items.order_by("pk").values_list("path", "status"))
    assert items == [
        ("run1/b.fastq", JobStatus.NOT_STARTED),
        ("run1/a.fastq", JobStatus.NOT_STARTED),
        ("run1/missing.fastq", JobStatus.FAILED),
    ]
    assert Pin.objects.filter(job=job).count() == 2
    listed = client.get(f"{API}/stage/{job.uuid}").json()["files"]
    assert [f["path"] for f in listed] == ["/run1/b.fastq", "/run1/a.fastq", "/run1/missing.fastq"]


def test_a_request_of_files_none_of_which_exists_is_born_failed(client_for, store):
    response = stage_ndjson(client_for(), "/nothing/here.bin")

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert (job.status, job.files_total, job.files_failed) == (JobStatus.FAILED, 1, 1)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"{oops", ["line 2", "not a JSON value"]),
        (b"42", ["line 2"]),
        (json.dumps({"path": ""}).encode(), ["line 2"]),
        (json.dumps({"path": "/a/../etc/passwd"}).encode(), ["line 2", ".."]),
        (
            json.dumps({"path": "/a.txt", "diskLifetime": "soon"}).encode(),
            ["line 2", "diskLifetime"],
        ),
        (json.dumps({"path": "/" + "x" * 1100}).encode(), ["line 2", "1024"]),
        (json.dumps({"path": "/a\u0000b"}).encode(), ["line 2", "NUL"]),
    ],
)
def test_a_bad_line_is_a_400_naming_it_and_nothing_is_created(
    client_for, archive_files, line, words
):
    archive_files({"a.txt": b"a"})

    response = stage_ndjson(client_for(), "/a.txt", line, "/a.txt")

    assert_problem(response, 400, *words)
    assert not Job.objects.exists()
    assert not Item.objects.exists()


def test_files_of_two_stores_are_a_400_naming_the_line(client_for, archive_files, tmp_path):
    archive_files({"a.txt": b"a"})
    cold = second_store(tmp_path)
    archive_files({"b.txt": b"b"}, target=cold)

    response = stage_ndjson(client_for(), "/a.txt", f"/{cold.slug}/b.txt")

    assert_problem(response, 400, "line 2", "one store")
    assert not Job.objects.exists()


def test_more_files_than_the_limit_is_a_400(client_for, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 2}
    archive_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})

    response = stage_ndjson(client_for(), "/a.txt", "/b.txt", "/c.txt")

    assert_problem(response, 400, "At most 2 files", "line 3")
    assert not Job.objects.exists()


def test_files_missing_between_others_leave_no_gap_and_unscanned_ones_are_catalogued(
    client_for, archive_files, store, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2}
    archive_files({"a.bin": b"a", "c.bin": b"cc"})
    Path(store.archive_root, "unscanned.bin").write_bytes(b"uuu")  # in the archive, no scan

    response = stage_ndjson(
        client_for(Role.DATA_USER), "/a.bin", "/gone.bin", "/unscanned.bin", "/no.bin", "/c.bin"
    )

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    staged = job.items.exclude(status=JobStatus.FAILED).order_by("pk")
    assert list(staged.values_list("path", "subjob__sequence", "size")) == [
        ("a.bin", 1, 1),
        ("unscanned.bin", 1, 3),
        ("c.bin", 2, 2),
    ]
    assert list(job.subjobs.order_by("sequence").values_list("files_total", "bytes_total")) == [
        (2, 4),
        (1, 2),
    ]
    failed = job.items.filter(status=JobStatus.FAILED).order_by("pk")
    assert list(failed.values_list("path", flat=True)) == ["gone.bin", "no.bin"]
    assert (job.files_total, job.bytes_total) == (5, 6)
    assert sorted(Pin.objects.filter(job=job).values_list("path", flat=True)) == [
        "a.bin",
        "c.bin",
        "unscanned.bin",
    ]
