"""POST /api/v1/jobs/ with the files as the body: NDJSON (one id or path a line, read as it
comes) or a bare JSON array, the other parameters in the query string."""

import json

import pytest

from staging.models import Item, Job, Pin
from staging.roles import Role
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"
NDJSON = "application/x-ndjson"


def ndjson(*values) -> bytes:
    return b"".join(json.dumps(v).encode() + b"\n" for v in values)


def post_ndjson(client, body: bytes, query: str = "", **headers):
    return client.post(f"{JOBS}{query}", body, content_type=NDJSON, **headers)


def test_an_ndjson_body_of_ids_stages_them_in_order_without_repeats(api_as, archive_files):
    a, b, c = archive_files({"a.txt": b"alpha", "run/b.bin": b"beta", "c.txt": b"gamma"})
    client = api_as(Role.DATA_USER)

    body = ndjson(c.id, a.id, c.id) + b"\n" + ndjson(b.id)  # a blank line is skipped
    response = post_ndjson(client, body, "?lifetime=P2D&verify=true")

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert (job.task, job.source, job.owner, job.files_total) == ("stage", "api", client.user, 3)
    assert job.bytes_total == len(b"gammaalphabeta")
    assert job.parameters == {"verify": True, "lifetime": "P2D"}
    assert list(job.items.order_by("pk").values_list("path", flat=True)) == [
        "c.txt",
        "a.txt",
        "run/b.bin",
    ]
    assert all(item.subjob_id for item in job.items.all())
    assert Pin.objects.filter(job=job).count() == 3


def test_a_json_array_body_of_paths_stages_them(api_as, archive_files):
    archive_files({"a.txt": b"alpha", "run/b.bin": b"beta"})

    response = api_as(Role.DATA_USER).post(
        f"{JOBS}?by=paths", ["run//b.bin", "a.txt"], format="json"
    )

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert list(job.items.order_by("pk").values_list("path", flat=True)) == ["run/b.bin", "a.txt"]


def test_a_path_named_twice_in_two_spellings_is_staged_and_pinned_once(api_as, archive_files):
    archive_files({"a.txt": b"alpha", "run/b.bin": b"beta"})

    body = b'"run//b.bin"\n"a.txt"\n"run/b.bin"\n'
    response = post_ndjson(api_as(Role.DATA_USER), body, "?by=paths")

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert list(job.items.order_by("pk").values_list("path", flat=True)) == ["run/b.bin", "a.txt"]
    assert sorted(Pin.objects.filter(job=job).values_list("path", flat=True)) == [
        "a.txt",
        "run/b.bin",
    ]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"not json", ["line 2", "not a JSON value"]),
        (b"42", ["line 2", "expected a non-empty JSON string"]),
        (b'""', ["line 2", "expected a non-empty JSON string"]),
        (b'"' + b"x" * 65 + b'"', ["line 2", "longer than 64 characters"]),
        (b'"a\\u0000b"', ["line 2", "NUL"]),
        (b"\xff\xfe", ["line 2", "not a JSON value"]),
        (b'"\xff"', ["line 2", "not a JSON value"]),  # a string, but not UTF-8
        (b'"a\tb"', ["line 2", "not a JSON value"]),  # a raw control character
        (b'"a"b"', ["line 2", "not a JSON value"]),
    ],
)
def test_a_bad_line_is_a_400_naming_it_and_nothing_is_created(api_as, archive_files, line, words):
    (a,) = archive_files({"a.txt": b"alpha"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(a.id) + line + b"\n" + ndjson(a.id))

    assert_problem(response, 400, *words)
    assert not Job.objects.exists()
    assert not Item.objects.exists()


def test_names_written_with_json_escapes_are_the_same_names(api_as, archive_files):
    archive_files({"a.txt": b"alpha", "d\u00e9j\u00e0/b.txt": b"beta"})
    body = b'"a\\u002etxt"\n"d\\u00e9j\\u00e0/b.txt"\n"d\xc3\xa9j\xc3\xa0/b.txt"\n'

    response = post_ndjson(api_as(Role.DATA_USER), body, "?by=paths")

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert list(job.items.order_by("pk").values_list("path", flat=True)) == [
        "a.txt",
        "d\u00e9j\u00e0/b.txt",
    ]


def test_an_unknown_id_is_a_404_naming_its_line(api_as, archive_files):
    (a,) = archive_files({"a.txt": b"alpha"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(a.id, "f" * 32))

    body = assert_problem(response, 404, "line 2", "f" * 32)
    assert body["unknown_ids"] == ["f" * 32]
    assert not Job.objects.exists()


def test_unknown_ids_are_a_404_listing_them_all_as_a_json_body_does(api_as, archive_files):
    # docs/api.md: names that match nothing are a 404 listing the first 20, with how many.
    (a,) = archive_files({"a.txt": b"alpha"})
    unknown = [f"{n:032x}" for n in range(25)]

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(a.id, *unknown))

    body = assert_problem(response, 404, "line 2", unknown[0], "5 more")
    assert body["unknown_ids"] == unknown[:20]
    assert body["unknown_ids_count"] == 25
    assert not Job.objects.exists()


def test_an_unsafe_path_is_a_400_naming_its_line(api_as, archive_files):
    archive_files({"a.txt": b"alpha"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson("a.txt", "../etc/passwd"), "?by=paths")

    assert_problem(response, 400, "line 2")
    assert not Job.objects.exists()


def test_more_names_than_the_limit_is_a_400_and_nothing_is_created(api_as, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 2}
    files = archive_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(*[f.id for f in files]))

    assert_problem(response, 400, "At most 2 ids", "line 3")
    assert not Job.objects.exists()


def test_a_body_of_names_only_stages_files(api_as, archive_files):
    (a,) = archive_files({"a.txt": b"alpha"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(a.id), "?task=checksum")

    assert_problem(response, 400)
    assert response.json()["field"] == "task"
    assert not Job.objects.exists()


def test_an_empty_body_of_names_is_a_400(api_as, archive_files):
    response = post_ndjson(api_as(Role.DATA_USER), b"\n\n")
    assert_problem(response, 400, "at least one file")


def test_the_same_idempotency_key_and_names_return_the_first_job(api_as, archive_files):
    a, b = archive_files({"a.txt": b"alpha", "b.txt": b"beta"})
    client = api_as(Role.DATA_USER)
    key = {"HTTP_IDEMPOTENCY_KEY": "batch-7"}

    first = post_ndjson(client, ndjson(a.id, b.id), **key)
    again = post_ndjson(client, b" " + ndjson(a.id, b.id), **key)
    other = post_ndjson(client, ndjson(b.id, a.id), **key)

    assert first.status_code == again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again["Idempotent-Replayed"] == "true"
    assert_problem(other, 422)
    assert Job.objects.count() == 1


def test_a_bad_element_of_a_json_array_is_a_400_naming_it(api_as, archive_files):
    (a,) = archive_files({"a.txt": b"alpha"})

    response = api_as(Role.DATA_USER).post(JOBS, [a.id, 2], format="json")

    assert_problem(response, 400, "[1]", "expected a non-empty JSON string")
    assert response.json()["field"] == "ids"
    assert not Job.objects.exists()


def test_a_streamed_request_is_sliced_as_a_json_body_is_when_files_pass_the_byte_bound(
    api_as, archive_files, settings
):
    # Slices bounded by bytes as well as files: a file larger than the bound gets its own.
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 3, "SUBJOB_MAX_BYTES": 10}
    sizes = [4, 4, 4, 1, 1, 1, 1, 12, 2, 2]
    files = archive_files({f"f{n}.bin": b"x" * size for n, size in enumerate(sizes)})
    client = api_as(Role.DATA_USER)

    def subjobs(response):
        assert response.status_code == 202, response.content
        job = Job.objects.get(uuid=response.json()["jobId"])
        items = job.items.order_by("pk").values_list("path", "subjob__sequence")
        totals = job.subjobs.order_by("sequence").values_list("files_total", "bytes_total")
        return list(items), list(totals)

    streamed = subjobs(post_ndjson(client, ndjson(*(f.id for f in files))))
    whole = subjobs(client.post(JOBS, {"ids": [f.id for f in files]}, format="json"))

    assert streamed == whole
    assert streamed[1] == [(2, 8), (3, 6), (2, 2), (1, 12), (2, 4)]


def test_unknown_ids_holding_tabs_and_backslashes_are_listed_as_sent(api_as, archive_files):
    (a,) = archive_files({"a.txt": b"alpha"})
    odd = ["tab\there", "back\\slash", "cr\rlf\n"]

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(a.id, *odd))

    body = assert_problem(response, 404, "line 2")
    assert body["unknown_ids"] == odd
    assert not Job.objects.exists()
