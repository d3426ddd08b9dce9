"""The queries of one admin page render, counted and timed in a process of its own on one bench
database: ``python -m bench.admin_queries PATH --output FILE`` (BENCH_DATABASE names the
database). Tells P6 where a slow page spends its time."""

import argparse
import json
from pathlib import Path

SLOWEST = 5


def page_queries(path: str) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from bench.prepare import BENCH_STAFF
    from bench.query_count import statements_sent

    client = Client()
    client.force_login(get_user_model().objects.get(username=BENCH_STAFF))
    client.get(path)  # the first render opens the connection and fills caches
    with statements_sent() as sent:
        response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}")
    queries = [
        {"ms": round(statement.seconds * 1000, 1), "sql": statement.sql[:400]} for statement in sent
    ]
    return {
        "count": len(queries),
        "sql_ms": round(sum(q["ms"] for q in queries), 1),
        "slowest": sorted(queries, key=lambda q: q["ms"], reverse=True)[:SLOWEST],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_queries")
    parser.add_argument("path", help="the admin page, e.g. /admin/staging/job/")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    args.output.write_text(json.dumps(page_queries(args.path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
