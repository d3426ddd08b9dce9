"""manage.py addstore: several stores, one primary."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from staging.models import Store

pytestmark = pytest.mark.django_db


def addstore(slug: str, root: Path, *flags: str) -> str:
    out = StringIO()
    call_command(
        "addstore",
        slug,
        "--archive-root",
        str(root / "archive"),
        "--staging-root",
        str(root / "staging"),
        *flags,
        stdout=out,
    )
    return out.getvalue()


def test_it_adds_a_store_with_its_roots_on_disk(tmp_path):
    output = addstore("tape", tmp_path, "--kind", "posix-tape", "--latency-ms", "250")
    store = Store.objects.get(slug="tape")
    assert (store.kind, store.simulated_latency_ms, store.hard_link) == ("posix-tape", 250, False)
    assert Path(store.archive_root).is_dir() and Path(store.staging_root).is_dir()
    # The first store is the primary one: a request that names none needs one.
    assert store.is_primary
    assert output.startswith("store tape (posix-tape, primary): archive ")


def test_primary_moves_to_a_store_added_as_primary(tmp_path, store):
    addstore("second", tmp_path / "second", "--hard-link")
    assert not Store.objects.get(slug="second").is_primary
    addstore("third", tmp_path / "third", "--primary")
    assert list(Store.objects.filter(is_primary=True).values_list("slug", flat=True)) == ["third"]


@pytest.mark.parametrize(
    ("slug", "archive", "staging", "message"),
    [
        ("Bad Name", "a", "s", "is not a valid store id"),
        ("ok", "relative", None, "archive_root must be an absolute path"),
        ("ok", "a", "a/staging", "may not contain one another"),
        ("primary", "a", "s", "store primary already exists"),
    ],
)
def test_it_refuses_bad_stores_and_changes_nothing(
    tmp_path, store, slug, archive, staging, message
):
    archive_root = archive if archive == "relative" else str(tmp_path / archive)
    with pytest.raises(CommandError, match=message):
        call_command(
            "addstore",
            slug,
            "--archive-root",
            archive_root,
            "--staging-root",
            str(tmp_path / (staging or "s")),
        )
    assert list(Store.objects.values_list("slug", flat=True)) == ["primary"]


def test_credit_metadata_and_sources_are_given_inline_or_from_a_file(tmp_path):
    credit_file = tmp_path / "credit.json"
    credit_file.write_text('{"license": "CC0-1.0", "version": "1", "titles": null}')

    addstore(
        "soil",
        tmp_path,
        "--credit",
        f"@{credit_file}",
        "--sources",
        '[{"title": "Soil survey", "path": "https://doi.org/10.1/x", "email": "a@b.org"}]',
    )

    store = Store.objects.get(slug="soil")
    assert store.credit == {"license": "CC0-1.0", "version": "1", "titles": None}
    assert store.sources[0]["title"] == "Soil survey"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--credit", "{not json"), "--credit is not valid JSON"),
        (("--credit", '{"version": 2}'), "credit.version must be a string, not int"),
        (("--credit", '{"doi": "x"}'), "credit.doi is not a KBase credit field"),
        (("--sources", '{"title": "x"}'), "sources must be a JSON list, not an object"),
        (("--credit", "@/nonexistent/credit.json"), "--credit: cannot read"),
    ],
)
def test_credit_metadata_the_dts_cannot_read_is_refused(tmp_path, flags, message):
    with pytest.raises(CommandError, match=message):
        addstore("soil", tmp_path, *flags)
    assert not Store.objects.filter(slug="soil").exists()
