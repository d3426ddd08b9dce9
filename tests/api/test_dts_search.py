"""GET /dts/search: every word in the path, case-insensitively, paged stably."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from staging.models import File
from staging.roles import Role

pytestmark = pytest.mark.django_db


def paths(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [resource["path"] for resource in response.json()]


def test_every_word_must_occur_in_the_path_ignoring_case(client_for, archive_files):
    archive_files(
        {
            "soil/Genome_A.fasta": b"a",
            "soil/genome_b.FASTQ": b"b",
            "marine/genome_c.fasta": b"c",
            "soil/notes.txt": b"d",
        }
    )
    client = client_for()

    assert paths(client.get("/dts/search?query=GENOME")) == [
        "marine/genome_c.fasta",
        "soil/Genome_A.fasta",
        "soil/genome_b.FASTQ",
    ]
    assert paths(client.get("/dts/search?query=soil fasta")) == ["soil/Genome_A.fasta"]
    assert paths(client.get("/dts/search?query=fasta+genome+marine")) == ["marine/genome_c.fasta"]
    assert paths(client.get("/dts/search?query=soil absent")) == []


def test_results_are_data_resources_as_resources_answers_them(client_for, archive_files):
    (file,) = archive_files({"run/Reads.fastq": b"@r\nA\n"})
    client = client_for()

    (found,) = client.get("/dts/search?query=reads").json()

    assert found == client.get(f"/dts/resources?ids={file.id}").json()[0]
    assert found["hash"] != ""


def test_files_gone_from_the_archive_are_not_found(client_for, archive_files):
    _, gone = archive_files({"a/kept.txt": b"k", "a/gone.txt": b"g"})
    File.objects.filter(pk=gone.pk).update(present=False)
    assert paths(client_for().get("/dts/search?query=a/")) == ["a/kept.txt"]


def test_a_percent_or_underscore_matches_only_itself(client_for, archive_files):
    archive_files({"100%_done.txt": b"x", "1000_done.txt": b"y", "100a.txt": b"z"})
    client = client_for()
    assert paths(client.get("/dts/search?query=100%25")) == ["100%_done.txt"]
    assert paths(client.get("/dts/search?query=0_d")) == ["1000_done.txt"]


def test_paging_returns_every_match_exactly_once_in_a_stable_order(client_for, archive_files):
    names = {f"batch/{i:03d}-sample.txt": b"x" for i in range(23)}
    names["batch/unrelated.bin"] = b"y"
    archive_files(names)
    client = client_for()

    seen: list[str] = []
    for offset in range(0, 30, 5):
        seen += paths(client.get(f"/dts/search?query=sample&limit=5&offset={offset}"))

    assert seen == sorted(p for p in names if "sample" in p)
    assert paths(client.get("/dts/search?query=sample&limit=5&offset=30")) == []


def test_the_default_page_is_fifty(client_for, archive_files):
    archive_files({f"d/f{i:03d}.txt": b"" for i in range(55)})
    assert len(paths(client_for().get("/dts/search?query=txt"))) == 50


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "query"),
        ("?query=", "query"),
        ("?query=%20%20", "query"),
        ("?query=a&limit=0", "limit"),
        ("?query=a&limit=1001", "limit"),
        ("?query=a&limit=ten", "limit"),
        ("?query=a&limit=-1", "limit"),
        ("?query=a&limit=", "limit"),
        ("?query=a&offset=-5", "offset"),
        ("?query=a&offset=1.5", "offset"),
        ("?query=a&offset=99999999999999999999999", "offset"),
        ("?query=" + "+".join(f"w{i}" for i in range(17)), "query"),
    ],
)
def test_bad_parameters_get_a_problem_body_naming_them(client_for, query, field):
    response = client_for().get(f"/dts/search{query}")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["field"] == field
    assert field in body["detail"]


def test_a_page_costs_the_same_queries_for_one_result_or_many(client_for, archive_files):
    archive_files({f"many/{i:02d}.dat": b"x" for i in range(30)} | {"one/only.dat": b"y"})
    client = client_for()
    client.get("/dts/search?query=warm")  # authentication caches settle on the first call

    with CaptureQueriesContext(connection) as one:
        assert len(paths(client.get("/dts/search?query=only"))) == 1
    with CaptureQueriesContext(connection) as many:
        assert len(paths(client.get("/dts/search?query=many&limit=30"))) == 30

    searches = [q["sql"] for q in many.captured_queries if "staging_file" in q["sql"]]
    assert len(searches) == 1, searches
    assert len(many.captured_queries) == len(one.captured_queries)


@pytest.mark.parametrize("role", [Role.ADMIN])
def test_roles_outside_the_dts_policy_are_refused(client_for, role):
    assert client_for(role).get("/dts/search?query=a").status_code == 403


def test_search_needs_a_token(client):
    assert client.get("/dts/search?query=a").status_code == 401


def test_on_postgresql_the_trigram_index_can_answer_a_search(archive_files):
    if connection.vendor != "postgresql":
        pytest.skip("the trigram index exists on PostgreSQL only")
    archive_files({"a/genome.fasta": b"x"})
    sql, params = File.objects.filter(
        present=True, path__icontains="genome"
    ).query.sql_with_params()
    with connection.cursor() as cursor:
        # A tiny table is cheaper to read whole; forbid that to see whether the index matches
        # the expression Django writes for a case-insensitive "contains".
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "file_path_trgm" in plan, plan


def test_a_nul_character_in_the_query_is_a_400_not_a_server_error(client_for):
    response = client_for().get("/dts/search?query=genome%00fasta")
    assert response.status_code == 400
    assert response.json()["field"] == "query"
    assert "NUL" in response.json()["detail"]
