"""P8 DTS search: GET /dts/search on a catalogue of a million files (PostgreSQL, trigram index).

Two figures, each beside a baseline in the same run:

- the search's query alone (the selector, page of 50) against a plain indexed primary-key
  lookup of one catalogue file, both p50 over repeated queries, in a process of its own on the
  large database (``python -m bench.dts_search --files N --repeats R --output FILE``), which
  also tops the catalogue up to N files and records the query plan;
- the endpoint over HTTP against GET /dts/resources for the same ids (the same stack and the
  same rendering, the files found by primary key instead of by search).

The catalogue is seeded with one INSERT … SELECT over generate_series into a store of its own
and kept between runs (a run tops up what an earlier one left, like the seeded jobs)."""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import requests

from bench.context import DATABASES, BenchContext
from bench.harness import PYTHON, REPO_ROOT, Result, service_env

CATALOGUE_STORE = "bench-catalogue"
PAGE = 50
EXTENSIONS = ("fastq.gz", "fasta", "bam", "vcf", "tsv")
# Paths like proj0421/sample_4242/123456_3fa9c2e1b7d0.fasta: at a million files, projects of
# about a thousand files, samples of about twenty, and a unique hex part that pins one file.
_PATH_SQL = (
    "'proj' || lpad(mod(i, 997)::text, 4, '0') || '/sample_' || mod(i, 49999)::text || '/' "
    "|| i::text || '_' || substr(md5(i::text), 1, 12) || '.' "
    f"|| (ARRAY[{', '.join(repr(e) for e in EXTENSIONS)}])[1 + mod(i, {len(EXTENSIONS)})]"
)
# How each column of a seeded file is made per row of generate_series (``i``); a column not
# named here (one added to File later) gets its model default.
_COLUMNS = {
    "id": f"md5('{CATALOGUE_STORE}/' || i::text)",
    "store_id": "%(store)s",
    "path": _PATH_SQL,
    "size": "1024 + i",
    "mtime": "now()",
    "media_type": "'application/octet-stream'",
    "md5": "md5(i::text)",
    "present": "true",
    "last_seen_at": "now()",
}


def queries(files: int) -> dict[str, str]:
    """The searches timed, from very selective to matching a fifth of the catalogue (whose
    first page is cheap) and matching nothing (every candidate ruled out)."""
    import hashlib

    probe = files // 2 or 1
    return {
        "one file by a hex fragment": hashlib.md5(str(probe).encode()).hexdigest()[:10],
        "a sample directory": f"sample_{probe % 49999}/",
        "a project and a format": f"proj{probe % 997:04d} fasta",
        "a fifth of the catalogue": "bam",
        "nothing": "zzzq",
    }


def catalogue_seed(cursor, *, store_id: int, target: int) -> int:
    """Catalogue entries of the bench store up to ``target``; returns how many were added."""
    from staging.models import File

    table = File._meta.db_table
    cursor.execute(f"SELECT count(*) FROM {table} WHERE store_id = %s", [store_id])
    have = cursor.fetchone()[0]
    if have >= target:
        return 0
    columns, values, defaults = [], [], {}
    for field in File._meta.concrete_fields:
        columns.append(cursor.db.ops.quote_name(field.column))
        if field.column in _COLUMNS:
            values.append(_COLUMNS[field.column])
        else:
            defaults[field.column] = field.get_db_prep_save(field.get_default(), cursor.db)
            values.append(f"%({field.column})s")
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
        "FROM generate_series(%(first)s, %(last)s) AS i",
        {**defaults, "store": store_id, "first": have + 1, "last": target},
    )
    cursor.execute(f"ANALYZE {table}")
    return target - have


def _p50_ms(call, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def measure(*, files: int, repeats: int) -> dict:
    """Seed, then time the search's query and a primary-key lookup (this process, large DB)."""
    from django.db import connection

    from staging.models import File, Store
    from staging.selectors_dts import files_search, search_words

    started = time.monotonic()
    store, _ = Store.objects.get_or_create(
        slug=CATALOGUE_STORE,
        defaults={
            "archive_root": "/nonexistent/bench-catalogue/archive",
            "staging_root": "/nonexistent/bench-catalogue/staging",
            "description": "Catalogue of the search benchmark; nothing is staged from it.",
        },
    )
    with connection.cursor() as cursor:
        inserted = catalogue_seed(cursor, store_id=store.pk, target=files)
        cursor.execute("SELECT count(*) FROM staging_file WHERE store_id = %s", [store.pk])
        catalogue = cursor.fetchone()[0]
    seed_seconds = round(time.monotonic() - started, 2)

    per_query, search_times, found = {}, [], {}
    for label, text in queries(files).items():
        words = search_words(text)
        files_search(words=words, limit=PAGE, offset=0)  # warm the cache pages it reads
        p50, times = _p50_ms(lambda w=words: files_search(words=w, limit=PAGE, offset=0), repeats)
        per_query[label] = {"query": text, "p50_ms": round(p50, 3)}
        search_times += times
        found[label] = [f.id for f in files_search(words=words, limit=PAGE, offset=0)]
        per_query[label]["results"] = len(found[label])

    sample_ids = list(
        File.objects.filter(store=store).order_by("path").values_list("id", flat=True)[:repeats]
    )
    for file_id in sample_ids:  # warm, as for the searches
        File.objects.select_related("store").get(pk=file_id)
    lookup_times = []
    for file_id in sample_ids:
        began = time.perf_counter()
        File.objects.select_related("store").get(pk=file_id)
        lookup_times.append((time.perf_counter() - began) * 1000)

    rare = search_words(queries(files)["one file by a hex fragment"])
    plan_sql, plan_params = (
        File.objects.filter(present=True, path__icontains=rare[0])
        .order_by("store_id", "path")[:PAGE]
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {plan_sql}", plan_params)
        plan = [row[0] for row in cursor.fetchall()]
    return {
        "catalogue_files": catalogue,
        "inserted": inserted,
        "seed_seconds": seed_seconds,
        "search_p50_ms": statistics.median(search_times),
        "lookup_p50_ms": statistics.median(lookup_times),
        "per_query": per_query,
        "found": found,
        "plan": plan,
        "trigram_index_used": any("file_path_trgm" in line for line in plan),
    }


def _http_p50_ms(url: str, params: dict, headers: dict, repeats: int) -> float:
    def call():
        response = requests.get(url, params=params, headers=headers, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")

    call()
    return _p50_ms(call, repeats)[0]


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    info = ctx.database("large")
    output = ctx.temp_dir / "dts-search.json"
    print(f"  catalogue of {sizes.search_files:,} files in {DATABASES['large']}")
    subprocess.run(
        [
            PYTHON,
            "-m",
            "bench.dts_search",
            "--files",
            str(sizes.search_files),
            "--repeats",
            str(sizes.search_repeats),
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        env=service_env(DATABASES["large"]),
        check=True,
        timeout=1800,
        capture_output=True,
    )
    measured = json.loads(output.read_text())
    base_url = ctx.web("large")
    auth = {"Authorization": f"Bearer {info['token']}"}
    http_ours, http_baseline = [], []
    for label, text in queries(sizes.search_files).items():
        ids = measured["found"][label]
        http_ours.append(
            _http_p50_ms(
                f"{base_url}/dts/search",
                {"query": text, "limit": PAGE},
                auth,
                sizes.search_repeats,
            )
        )
        if ids:
            http_baseline.append(
                _http_p50_ms(
                    f"{base_url}/dts/resources", {"ids": ",".join(ids)}, auth, sizes.search_repeats
                )
            )
    catalogue = measured["catalogue_files"]
    plan_note = "trigram index used" if measured["trigram_index_used"] else "NO trigram index"
    details = {key: measured[key] for key in ("catalogue_files", "per_query", "plan")}
    return [
        Result(
            "P8",
            f"DTS search: a page of {PAGE} from {catalogue:,} files (query)",
            "ms",
            measured["search_p50_ms"],
            measured["lookup_p50_ms"],
            "one catalogue file by primary key (indexed)",
            higher_is_better=False,
            details={**details, "repeats": sizes.search_repeats, "seeded": measured["inserted"]},
            note=f"p50 over {len(details['per_query'])} queries x {sizes.search_repeats}; "
            f"{plan_note}",
        ),
        Result(
            "P8",
            f"DTS search over HTTP, {catalogue:,} files",
            "ms",
            statistics.median(http_ours),
            statistics.median(http_baseline) if http_baseline else None,
            "GET /dts/resources for the ids the search found",
            higher_is_better=False,
            details={
                "search_p50_ms_per_query": [round(t, 2) for t in http_ours],
                "resources_p50_ms_per_query": [round(t, 2) for t in http_baseline],
            },
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dts_search")
    parser.add_argument("--files", type=int, required=True, help="catalogue files wanted")
    parser.add_argument("--repeats", type=int, default=20, help="times each query runs")
    parser.add_argument("--output", type=Path, required=True, help="where to write the JSON")
    args = parser.parse_args(argv)

    import django

    django.setup()
    args.output.write_text(json.dumps(measure(files=args.files, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
