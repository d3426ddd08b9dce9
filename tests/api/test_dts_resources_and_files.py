"""GET /dts/resources (Frictionless DataResources) and the /api/v1/files/ catalogue listing."""

import hashlib

import pytest

from staging.models import File
from staging.roles import Role

pytestmark = pytest.mark.django_db


def test_resources_come_back_in_request_order_with_null_for_unknown_ids(client_for, archive_files):
    a, b = archive_files({"data/Reads.FASTQ": b"@r1\nACGT\n", "b.json": b"{}"})
    File.objects.filter(pk=a.pk).update(md5=hashlib.md5(b"@r1\nACGT\n").hexdigest())

    response = client_for().get(f"/dts/resources?ids={b.id},unknown,{a.id}")

    assert response.status_code == 200
    second, missing, first = response.json()
    assert missing is None
    assert second == {
        "id": b.id,
        "name": "b",
        "path": "b.json",
        "format": "json",
        "media_type": "application/json",
        "bytes": 2,
    }
    assert first["path"] == "data/Reads.FASTQ"
    assert first["name"] == "reads"
    assert first["format"] == "fastq"
    assert first["bytes"] == 9
    assert first["hash"] == hashlib.md5(b"@r1\nACGT\n").hexdigest()


@pytest.mark.parametrize("query", ["", "?ids=", "?ids=a,,b", "?ids=,"])
def test_resources_without_ids_is_400(client_for, query):
    response = client_for().get(f"/dts/resources{query}")
    assert response.status_code == 400
    assert response.json()["field"] == "ids"


def test_resources_need_a_token(client):
    assert client.get("/dts/resources?ids=a").status_code == 401


def test_files_can_be_found_by_exact_path_and_by_prefix(client_for, archive_files):
    archive_files({"run1/a.txt": b"a", "run1/b.txt": b"b", "run2/c.txt": b"c"})
    client = client_for()

    exact = client.get("/api/v1/files/?path=run1/b.txt").json()["results"]
    assert [f["path"] for f in exact] == ["run1/b.txt"]
    assert exact[0]["id"] == File.id_for("primary", "run1/b.txt")
    assert exact[0]["size"] == 1

    prefixed = client.get("/api/v1/files/?prefix=run1/").json()["results"]
    assert [f["path"] for f in prefixed] == ["run1/a.txt", "run1/b.txt"]


def test_files_listing_pages_with_a_cursor(client_for, archive_files):
    archive_files({f"f{n:02}.txt": b"x" for n in range(5)})
    client = client_for(Role.SERVICE_USER)
    page = client.get("/api/v1/files/?page_size=2").json()
    assert [f["path"] for f in page["results"]] == ["f00.txt", "f01.txt"]
    following = client.get(page["next"]).json()
    assert [f["path"] for f in following["results"]] == ["f02.txt", "f03.txt"]


def test_files_of_an_unknown_store_is_404(client_for, store):
    response = client_for().get("/api/v1/files/?store=elsewhere")
    assert response.status_code == 404
    assert "elsewhere" in response.json()["detail"]
