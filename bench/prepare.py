"""Get one bench database ready, in a process of its own: ``python -m bench.prepare --jobs N
--output FILE`` (with BENCH_DATABASE naming the database). Migrates, collects static files,
makes the bench users and a fresh token, tops the seeded jobs up to N, and writes what the
benchmarks need as JSON."""

import argparse
import json
import secrets
import time
from pathlib import Path

BENCH_USER = "bench-user"
BENCH_STAFF = "bench-staff"
SEED_STORE = "bench-seed"


def prepare(*, jobs: int, sample: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from knox.models import AuthToken

    from bench.seed import sample_jobs, seed_jobs, seeded_job_count
    from staging.models import Store
    from staging.roles import Role
    from staging.services.accounts import token_create

    started = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    # As `make run` does (bootstrap): the admin's pages and whitenoise expect them.
    call_command("collectstatic", interactive=False, verbosity=0)
    # Tokens of earlier runs go: every poll reads all of its user's tokens (knox checks them
    # for expiry), so leftovers would make each run slower than the last.
    AuthToken.objects.filter(user__username=BENCH_USER).delete()
    token = token_create(username=BENCH_USER, role=Role.DATA_USER)
    user = get_user_model().objects.get(username=BENCH_USER)
    staff, _ = get_user_model().objects.update_or_create(
        username=BENCH_STAFF, defaults={"is_staff": True, "is_superuser": True}
    )
    password = secrets.token_urlsafe(16)
    staff.set_password(password)
    staff.save()
    store, _ = Store.objects.get_or_create(
        slug=SEED_STORE,
        defaults={
            "archive_root": "/nonexistent/bench-seed/archive",
            "staging_root": "/nonexistent/bench-seed/staging",
            "description": "Owner of the seeded jobs; nothing is staged from it.",
        },
    )
    with connection.cursor() as cursor:
        inserted = seed_jobs(cursor, store_id=store.pk, owner_id=user.pk, target=jobs)
        count = seeded_job_count(cursor)
        picked = sample_jobs(cursor, count=sample)
    return {
        "database": connection.settings_dict["NAME"],
        "jobs": count,
        "inserted": inserted,
        "seconds": round(time.monotonic() - started, 2),
        "token": token,
        "user_id": user.pk,
        "staff_username": BENCH_STAFF,
        "staff_password": password,
        "sample": picked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare")
    parser.add_argument("--jobs", type=int, required=True, help="seeded jobs wanted")
    parser.add_argument("--sample", type=int, default=1000, help="job ids to hand back")
    parser.add_argument("--output", type=Path, required=True, help="where to write the JSON")
    args = parser.parse_args(argv)

    import django

    django.setup()
    args.output.write_text(json.dumps(prepare(jobs=args.jobs, sample=args.sample)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
