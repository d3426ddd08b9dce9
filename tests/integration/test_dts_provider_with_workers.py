"""The whole DTS provider contract in the DTS's own order, over real HTTP, with a real
`celery worker` on Redis and the test database: the catalogue is scanned by the worker, then
search → resources → stage → poll → ready → every file at STAGING_ROOT/<path> with the MD5
that resources announced (what Globus then verifies)."""

import hashlib
import os
from pathlib import Path

import pytest
import requests

from staging.models import File, Job, JobStatus
from staging.roles import Role
from staging.services.accounts import token_create, user_orcid_set
from staging.services.catalogue import catalogue_scan
from tests.integration.dts_client import dts_stage, poll_until_not_staging
from tests.workers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _staged_as_the_dts_polls(base: str, ids: list[str], headers: dict) -> str:
    """Ask to stage ``ids`` and poll the request until it is no longer "staging" (at most 90 s);
    its last status."""
    _, status_url = dts_stage(base, ids, headers)
    return poll_until_not_staging(status_url, headers)


def test_the_dts_finds_describes_stages_and_gets_every_file_with_its_md5(
    live_server, store, start_worker, broker
):
    contents = {
        "soil/plot1/Genome_A.fasta": os.urandom(4 * 1024 * 1024 + 11),
        "soil/plot2/genome_b.fasta": b">b\nACGT\n",
        "soil/plot2/empty.fasta": b"",
        "marine/genome_c.fasta": b">c\nTTTT\n",
    }
    for relative, data in contents.items():
        (Path(store.archive_root) / relative).parent.mkdir(parents=True, exist_ok=True)
        (Path(store.archive_root) / relative).write_bytes(data)
    store.credit = {"license": "CC-BY-4.0", "titles": [{"title": "Soil and sea genomes"}]}
    store.save()
    start_worker(concurrency=2)
    base = live_server.url
    operator = {"Authorization": f"Bearer {token_create(username='op', role=Role.DATA_ADMIN)}"}
    scan = requests.post(f"{base}/api/v1/tasks/scan/", json={}, headers=operator, timeout=10)
    assert scan.status_code == 202, scan.text
    assert wait_for_job(Job.objects.get(uuid=scan.json()["jobId"])).status == JobStatus.FINISHED

    dts = {"Authorization": f"Bearer {token_create(username='dts', role=Role.SERVICE_USER)}"}
    user_orcid_set(username="op", orcid="0000-0002-1825-0097")
    federated = requests.get(f"{base}/dts/localuser/0000-0002-1825-0097", headers=dts, timeout=10)
    assert federated.json() == {"orcid": "0000-0002-1825-0097", "username": "op"}

    # Search as a person pages: two results at a time, until a page comes back short.
    found = []
    for offset in (0, 2, 4):
        page = requests.get(
            f"{base}/dts/search",
            params={"query": "GENOME fasta", "limit": 2, "offset": offset},
            headers=dts,
            timeout=10,
        )
        assert page.status_code == 200, page.text
        found += page.json()
    assert sorted(r["path"] for r in found) == sorted(p for p in contents if "enome" in p)
    ids = [r["id"] for r in found]

    described = requests.get(
        f"{base}/dts/resources", params={"ids": ",".join(ids)}, headers=dts, timeout=10
    )
    assert described.status_code == 200
    resources = described.json()
    assert [r["id"] for r in resources] == ids
    for resource in resources:
        assert resource["hash"] == hashlib.md5(contents[resource["path"]]).hexdigest()
        assert resource["bytes"] == len(contents[resource["path"]])
        assert resource["credit"]["license"] == "CC-BY-4.0"

    assert _staged_as_the_dts_polls(base, ids, dts) == "ready"

    # Globus starts at once and checks every file against the announced MD5.
    for resource in resources:
        staged = Path(store.staging_root) / resource["path"]
        assert hashlib.md5(staged.read_bytes()).hexdigest() == resource["hash"]


def test_a_tape_file_without_a_sidecar_is_announced_with_the_md5_its_staging_took(
    live_server, tape_store, start_worker, broker
):
    data = os.urandom(3 * 1024 * 1024 + 7)
    archived = Path(tape_store.archive_root) / "run9" / "reads.tar"
    archived.parent.mkdir()
    archived.write_bytes(data)
    catalogue_scan(store=tape_store)  # a tape store's scan reads no file: no MD5 yet
    file = File.objects.get(store=tape_store, path="run9/reads.tar")
    start_worker(concurrency=1)
    base = live_server.url
    dts = {"Authorization": f"Bearer {token_create(username='dts', role=Role.SERVICE_USER)}"}
    resources_url = f"{base}/dts/resources?ids={file.id}"
    assert requests.get(resources_url, headers=dts, timeout=10).json()[0]["hash"] == ""

    assert _staged_as_the_dts_polls(base, [file.id], dts) == "ready"

    (resource,) = requests.get(resources_url, headers=dts, timeout=10).json()
    assert resource["hash"] == hashlib.md5(data).hexdigest()
    staged = Path(tape_store.staging_root) / resource["path"]
    assert hashlib.md5(staged.read_bytes()).hexdigest() == resource["hash"]
