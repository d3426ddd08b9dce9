"""P8's catalogue seeding and measurement, on a small catalogue in the test database."""

import pytest

from bench.dts_search import CATALOGUE_STORE, PAGE, measure, queries
from staging.models import File

pytestmark = pytest.mark.django_db


def test_the_catalogue_is_topped_up_and_every_query_finds_what_it_promises():
    first = measure(files=300, repeats=2)
    again = measure(files=300, repeats=2)

    assert (first["catalogue_files"], first["inserted"]) == (300, 300)
    assert (again["catalogue_files"], again["inserted"]) == (300, 0)
    stored = File.objects.filter(store__slug=CATALOGUE_STORE)
    assert stored.values("path").distinct().count() == 300
    assert len(first["found"]["one file by a hex fragment"]) == 1
    assert len(first["found"]["a fifth of the catalogue"]) == PAGE
    assert first["found"]["nothing"] == []
    assert set(first["per_query"]) == set(queries(300))
    assert first["search_p50_ms"] > 0 and first["lookup_p50_ms"] > 0
    assert any("staging_file" in line for line in first["plan"])
