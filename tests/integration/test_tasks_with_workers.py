"""Every catalogue task performed over real HTTP through both task APIs (DuraStore and API v1),
run by real `celery worker` processes on Redis and the test database."""

import csv
import hashlib
import io
import json
import os
import pwd
import stat
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from staging.models import File, Job, JobStatus, Pin, Store
from staging.result_files import results_file_path
from staging.roles import Role
from staging.services.accounts import token_create
from staging.services.recovery import staged_copies_sweep
from staging.services.retention import job_delete
from tests.workers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class TaskClient:
    """A client of both task APIs, as a user with a bearer token."""

    def __init__(self, base_url: str, username: str = "alice", role: str = Role.DATA_USER):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token_create(username=username, role=role)}"}

    def durastore(self, task: str, body: str = "", store: str = "primary") -> Job:
        response = requests.post(
            f"{self.base_url}/durastore/task/{task}?storeID={store}",
            data=body.encode(),
            headers={**self.headers, "Content-Type": "text/plain"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        return self._job(response)

    def api(self, task: str, parameters: dict | None = None, store: str = "primary") -> Job:
        response = requests.post(
            f"{self.base_url}/api/v1/tasks/{task}/?storeID={store}",
            json=parameters or {},
            headers=self.headers,
            timeout=10,
        )
        assert response.status_code == 202, response.text
        assert response.json()["statusuri"] == response.headers["Location"]
        return self._job(response)

    def results(self, job: Job, media_type: str = "text/csv") -> requests.Response:
        """The ended job's results, as task_status answers them."""
        response = requests.get(
            f"{self.base_url}/api/v1/task_status/{job.uuid}",
            headers={**self.headers, "Accept": media_type},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith(media_type)
        return response

    def csv_rows(self, job: Job) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.results(job).text)))

    def _job(self, response) -> Job:
        job_id = response.headers["Location"].rsplit("/", 1)[1]
        assert response.headers["Location"] == f"{self.base_url}/api/v1/task_status/{job_id}"
        self.last_text = response.text
        return Job.objects.get(uuid=job_id)


@pytest.fixture
def client(live_server) -> TaskClient:
    return TaskClient(live_server.url)


def finished(job: Job) -> Job:
    job = wait_for_job(job)
    assert job.status == JobStatus.FINISHED, list(job.items.values_list("path", "error"))
    return job


def test_noop_runs_on_a_worker_through_both_apis(client, store, start_worker):
    start_worker(concurrency=1)
    by_durastore = finished(client.durastore("noop", "ignored"))
    assert client.last_text == "Success"
    by_api = finished(client.api("noop", {"anything": ["is", "ignored"]}))
    for job in (by_durastore, by_api):
        subjob = job.subjobs.get()
        assert (subjob.status, subjob.attempts, job.files_total) == (JobStatus.FINISHED, 1, 0)
        assert subjob.worker.startswith("test-")
        assert client.results(job, "application/json").json()["files"] == []


def test_stage_with_verify_runs_on_a_worker_through_both_apis(
    client, store, archive_files, start_worker
):
    contents = {"a/genome.fa": os.urandom(2 * 1024 * 1024 + 5), "b.txt": b"beta\n"}
    files = archive_files(contents)
    File.objects.filter(store=store).update(md5="")  # entries with no checksum yet
    start_worker(concurrency=2)

    by_durastore = finished(client.durastore("stage", "a/genome.fa\n"))
    by_api = finished(client.api("stage", {"ids": [f.id for f in files], "verify": True}))

    staging = Path(store.staging_root)
    for path, data in contents.items():
        assert (staging / path).read_bytes() == data
        # The copies took each file's MD5 on the way; verify checked against it.
        assert File.objects.get(store=store, path=path).md5 == hashlib.md5(data).hexdigest()
    assert by_durastore.parameters == {"verify": False}
    rows = client.csv_rows(by_api)
    assert {r["path"]: (r["status"], r["algorithm"], r["checksum"]) for r in rows} == {
        path: ("FINISHED", "md5", hashlib.md5(data).hexdigest()) for path, data in contents.items()
    }
    assert Pin.objects.filter(job__in=[by_durastore, by_api]).count() == 3


def test_stage_with_verify_fails_a_corrupt_copy_for_good_on_a_worker(
    client, store, archive_files, start_worker
):
    archive_files({"c.bin": b"correct content"})
    staged = Path(store.staging_root) / "c.bin"
    staged.write_bytes(b"corrupt content")  # the right size and mtime, the wrong bytes
    archived = (Path(store.archive_root) / "c.bin").stat()
    os.utime(staged, ns=(archived.st_atime_ns, archived.st_mtime_ns))
    start_worker(concurrency=1)

    job = wait_for_job(client.api("stage", {"paths": ["c.bin"], "verify": True}))
    item = job.items.get()
    assert (job.status, item.attempts) == (JobStatus.FAILED, 1)
    assert "checksum mismatch" in item.error
    assert not staged.exists()


def test_restore_content_runs_on_a_worker_through_both_apis(
    client, store, tape_store, archive_files, start_worker
):
    Store.objects.filter(pk=tape_store.pk).update(simulated_latency_ms=200)
    archive_files({"space/dir/item.bin": b"on tape", "space/other.bin": b"also"}, tape_store)
    start_worker(concurrency=2)

    by_durastore = finished(client.durastore("restore-content", "space/dir/item.bin", "tape"))
    assert client.last_text == (
        "Request to restore content item dir/item.bin in space space was successful."
    )
    by_api = finished(
        client.api("restore-content", {"spaceID": "space", "contentID": "other.bin"}, "tape")
    )

    staging = Path(tape_store.staging_root)
    assert (staging / "space/dir/item.bin").read_bytes() == b"on tape"
    assert (staging / "space/other.bin").read_bytes() == b"also"
    for job in (by_durastore, by_api):
        pin = Pin.objects.get(job=job)
        # Available for 14 days from the moment the content was restored, as Glacier's.
        assert pin.expires_at - job.finished_at == timedelta(days=14)


def test_scan_runs_on_a_worker_through_both_apis(client, store, archive_files, start_worker):
    archive_files({"run1/a.txt": b"alpha", "run2/b.txt": b"beta"})
    (Path(store.archive_root) / "run1" / "new.txt").write_bytes(b"not yet catalogued")
    start_worker(concurrency=1)

    by_durastore = finished(client.durastore("scan", "run1"))
    assert [r["path"] for r in client.csv_rows(by_durastore)] == ["run1/a.txt", "run1/new.txt"]
    assert File.objects.filter(store=store, path="run1/new.txt", present=True).exists()

    (Path(store.archive_root) / "run2" / "b.txt").unlink()
    by_api = finished(client.api("scan"))
    assert sorted(r["path"] for r in client.csv_rows(by_api)) == ["run1/a.txt", "run1/new.txt"]
    assert not File.objects.get(store=store, path="run2/b.txt").present
    summary = client.results(by_api, "application/json").json()["summary"]
    assert (summary["files_seen"], summary["files_vanished"]) == (2, 1)


@pytest.mark.parametrize(
    ("dialect", "algorithm", "reference"),
    [
        ("durastore", "md5", lambda data: hashlib.md5(data).hexdigest()),
        ("api", "sha256", lambda data: hashlib.sha256(data).hexdigest()),
        ("api", "adler32", lambda data: f"{zlib.adler32(data):08x}"),
    ],
)
def test_checksums_computed_on_a_worker_match_hashlib_and_zlib(
    client, store, archive_files, start_worker, dialect, algorithm, reference
):
    contents = {
        "big.bin": os.urandom(9 * 1024 * 1024 + 123),  # several 4 MiB reads
        "small.txt": b"ACGT\n",
        "empty.dat": b"",
    }
    files = archive_files(contents)
    start_worker(concurrency=2)

    if dialect == "durastore":
        job = client.durastore(
            "checksum", json.dumps({"paths": list(contents), "algorithm": algorithm})
        )
    else:
        job = client.api("checksum", {"ids": [f.id for f in files], "algorithm": algorithm})
    job = finished(job)

    expected = {path: reference(data) for path, data in contents.items()}
    assert {r["path"]: r["checksum"] for r in client.csv_rows(job)} == expected
    catalogue = File.objects.filter(store=store).values_list("path", algorithm)
    assert dict(catalogue) == expected


def test_release_runs_on_a_worker_through_both_apis(
    client, store, archive_files, start_worker, live_server
):
    files = archive_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    start_worker(concurrency=1)
    staged = finished(client.api("stage", {"ids": [f.id for f in files]}))
    bob = TaskClient(live_server.url, username="bob")  # bob stages a.txt too
    finished(bob.api("stage", {"paths": ["a.txt"]}))

    by_durastore = finished(client.durastore("release", "a.txt\nb.txt"))
    assert {r["path"]: r["pins_released"] for r in client.csv_rows(by_durastore)} == {
        "a.txt": "1",
        "b.txt": "1",
    }
    by_api = finished(client.api("release", {"job": str(staged.uuid)}))
    assert [r["path"] for r in client.csv_rows(by_api)] == ["c.txt"]

    assert staged_copies_sweep() == 2
    staging = Path(store.staging_root)
    assert sorted(p.name for p in staging.iterdir()) == ["a.txt"]  # bob still pins it


def test_a_scan_of_thousands_of_files_gives_csv_rows_that_match_os_stat(
    client, store, archive_files, start_worker, results_root
):
    archive = Path(store.archive_root)
    names = ["plain.txt", "with space.fq", 'comma, "quote".csv', "ünïcode.tsv", "noext"]
    for n in range(3000):
        path = archive / f"d{n % 7}" / f"sub{n % 13}" / f"{n:04d}-{names[n % len(names)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(n % 97))
        if n % 5 == 0:
            path.chmod(0o640)
    (known,) = archive_files({"d0/known.bin": b"known"})  # catalogued, with a checksum
    File.objects.filter(pk=known.pk).update(md5=hashlib.md5(b"known").hexdigest())
    start_worker(concurrency=1)

    job = finished(client.api("scan"))

    rows = client.csv_rows(job)
    assert len(rows) == 3001
    assert list(rows[0]) == [
        "store", "path", "name", "extension", "size", "owner", "group", "permissions",
        "mtime", "atime", "ctime", "inode", "md5", "sha256", "adler32",
    ]  # fmt: skip
    on_disk = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}
    assert {r["path"] for r in rows} == on_disk
    for row in rows:
        info = os.stat(archive / row["path"])
        assert row["store"] == "primary"
        assert row["name"] == Path(row["path"]).name
        assert row["extension"] == Path(row["path"]).suffix[1:]
        assert int(row["size"]) == info.st_size
        assert int(row["inode"]) == info.st_ino
        # A cell starting with "-" is quoted with ' so that no spreadsheet reads a formula.
        assert row["permissions"] == "'" + stat.filemode(info.st_mode)
        assert row["owner"] == pwd.getpwuid(info.st_uid).pw_name
        for name in ("mtime", "atime", "ctime"):
            assert row[name] == timestamp(getattr(info, f"st_{name}_ns"))
    by_path = {r["path"]: r for r in rows}
    assert by_path["d0/known.bin"]["md5"] == hashlib.md5(b"known").hexdigest()
    # Every file of a disk store has its MD5 after a scan (that of its bytes).
    sample = "d1/sub1/0001-with space.fq"
    assert by_path[sample]["md5"] == hashlib.md5((archive / sample).read_bytes()).hexdigest()
    assert File.objects.filter(store=store, present=True).count() == 3001

    as_json = client.results(job, "application/json").json()
    assert len(as_json["files"]) == 3001 and as_json["files"][0]["size"] == int(rows[0]["size"])

    results_file = results_file_path(job.result_file)
    assert results_file.parent == results_root and results_file.is_file()
    job_delete(job=job)
    assert not results_file.exists()


def timestamp(nanoseconds: int) -> str:
    """What a scan row says for a time: UTC, ISO 8601, to the microsecond."""
    return (
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanoseconds // 1000)
    ).isoformat()
