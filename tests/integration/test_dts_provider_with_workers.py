"""The whole DTS provider contract in the DTS's own order, over real HTTP, with a real
`celery worker` on Redis and the test database: the catalogue is scanned by the worker, then
search → resources → stage → poll → ready → every file at STAGING_ROOT/<path> with the MD5
that resources announced (what Globus then verifies)."""

import hashlib
import os
import time
from pathlib import Path

import pytest
import requests

from staging.models import Job, JobStatus
from staging.roles import Role
from staging.services.accounts import token_create, user_orcid_set
from tests.workers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


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

    created = requests.post(f"{base}/dts/staging", json={"ids": ids}, headers=dts, timeout=10)
    assert created.status_code == 201, created.text
    status_url = f"{base}/dts/staging?id={created.json()['request_id']}"
    status, deadline = "staging", time.monotonic() + 90
    while status == "staging" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = requests.get(status_url, headers=dts, timeout=10).json()["status"]
    assert status == "ready"

    # Globus starts at once and checks every file against the announced MD5.
    for resource in resources:
        staged = Path(store.staging_root) / resource["path"]
        assert hashlib.md5(staged.read_bytes()).hexdigest() == resource["hash"]
