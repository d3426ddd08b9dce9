"""GET /dts/resources (Frictionless DataResources) and the /api/v1/files/ catalogue listing."""

import hashlib
import os

import pytest

from staging.models import File
from staging.roles import Role

pytestmark = pytest.mark.django_db


def test_resources_come_back_in_request_order_with_null_for_unknown_ids(client_for, archive_files):
    a, b = archive_files({"data/Reads.FASTQ": b"@r1\nACGT\n", "b.json": b"{}"})

    response = client_for().get(f"/dts/resources?ids={b.id},unknown,{a.id}")

    assert response.status_code == 200
    second, missing, first = response.json()
    assert missing is None
    assert second == {
        "id": b.id,
        "name": "b",
        "path": "b.json",
        "format": "json",
        "mediatype": "application/json",
        "media_type": "application/json",
        "bytes": 2,
        "hash": hashlib.md5(b"{}").hexdigest(),
        "credit": {
            "comment": "",
            "description": "",
            "identifier": b.id,
            "license": "",
            "resource_type": "dataset",
            "version": "",
            "contributors": [],
            "dates": [],
            "funding": None,
            "related_identifiers": None,
            "repository": {"organization_id": "", "organization_name": ""},
            "titles": None,
        },
        "sources": [],
    }
    assert first["path"] == "data/Reads.FASTQ"
    assert first["name"] == "reads"
    assert first["format"] == "fastq"
    assert first["bytes"] == 9


def test_the_hash_is_the_md5_of_the_bytes_a_plain_scan_found(client_for, archive_files):
    data = os.urandom(2 * 1024 * 1024 + 3)
    (file,) = archive_files({"genome.fasta": data})

    (resource,) = client_for().get(f"/dts/resources?ids={file.id}").json()

    assert resource["hash"] == hashlib.md5(data).hexdigest()


def test_the_hash_is_an_empty_string_when_no_md5_is_known(client_for, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    File.objects.filter(pk=file.pk).update(md5="", sha256="a" * 64)

    (resource,) = client_for().get(f"/dts/resources?ids={file.id}").json()

    # The DTS hands "hash" to Globus as an MD5 and type-asserts a string: never sha256, never null.
    assert resource["hash"] == ""


def test_ids_paths_and_bytes_have_the_types_the_dts_reads(client_for, archive_files):
    (file,) = archive_files({"dir/x y.tar.gz": b"12345"})

    (resource,) = client_for().get(f"/dts/resources?ids={file.id}").json()

    assert resource["id"] == file.id and isinstance(resource["id"], str)
    assert resource["path"] == "dir/x y.tar.gz"  # relative to the staging-area root
    assert isinstance(resource["bytes"], int) and resource["bytes"] == 5
    assert isinstance(resource["hash"], str)
    assert (resource["format"], resource["mediatype"]) == ("tar.gz", "application/x-tar")


def test_credit_and_sources_come_from_the_store_and_a_file_overrides_them(
    client_for, archive_files, store
):
    store.credit = {
        "titles": [{"title": "Soil metagenomes"}],
        "license": "CC-BY-4.0",
        "version": "2",
        "repository": {"organization_id": "ROR:05gvnxz63", "organization_name": "Example"},
        "contributors": [{"contributor_type": "Person", "name": "Carberry, Josiah"}],
        "dates": [{"date": "2024-01-02", "event": "approval"}],
    }
    store.sources = [{"title": "Carberry", "path": "https://doi.org/10.1/x", "email": "j@x"}]
    store.save()
    plain, special = archive_files({"a.txt": b"a", "b.txt": b"b"})
    File.objects.filter(pk=special.pk).update(
        metadata={"credit": {"version": "3", "titles": None}, "sources": []}
    )

    first, second = client_for().get(f"/dts/resources?ids={plain.id},{special.id}").json()

    assert first["credit"]["titles"] == [{"title": "Soil metagenomes"}]
    assert first["credit"]["license"] == "CC-BY-4.0"
    assert first["credit"]["version"] == "2"
    assert first["credit"]["repository"]["organization_name"] == "Example"
    assert first["credit"]["contributors"][0]["name"] == "Carberry, Josiah"
    assert first["credit"]["dates"] == [{"date": "2024-01-02", "event": "approval"}]
    assert (first["credit"]["identifier"], first["credit"]["resource_type"]) == (
        plain.id,
        "dataset",
    )
    assert first["sources"] == store.sources
    assert (second["credit"]["version"], second["credit"]["titles"]) == ("3", None)
    assert second["credit"]["license"] == "CC-BY-4.0"
    assert second["credit"]["identifier"] == special.id
    assert second["sources"] == []


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


def test_a_nul_character_in_an_id_is_a_400_not_a_server_error(client_for):
    response = client_for().get("/dts/resources?ids=abc,a%00b")
    assert response.status_code == 400
    assert response.json()["field"] == "ids"
    assert "NUL" in response.json()["detail"]
