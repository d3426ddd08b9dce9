"""P6 admin: time to render admin pages as a logged-in staff user over HTTP with a million
jobs, against the same page with a thousand. A ratio of 1 means the page does not grow with
the table. Adding a page to watch is one line in ``PAGES``."""

import json
import statistics
import subprocess
import time

import requests

from bench.context import DATABASES, BenchContext
from bench.harness import PYTHON, REPO_ROOT, Result, service_env

PAGES = [
    ("job changelist", "/admin/staging/job/"),
]


def staff_session(base_url: str, username: str, password: str) -> requests.Session:
    """Log in through the admin's own login form, as a person would."""
    session = requests.Session()
    login_url = f"{base_url}/admin/login/"
    session.get(login_url, timeout=30).raise_for_status()
    response = session.post(
        login_url,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login_url},
        timeout=30,
        allow_redirects=False,
    )
    if response.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(f"admin login failed ({response.status_code})")
    return session


def render_seconds(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=120)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or 'id="result_list"' not in response.text:
        raise RuntimeError(f"{url} answered {response.status_code} without a result list")
    return elapsed


def page_queries(ctx: BenchContext, which: str, path: str) -> dict:
    """Count and time the page's queries (bench.admin_queries, on that side's database)."""
    output = ctx.temp_dir / f"admin-queries-{which}.json"
    subprocess.run(
        [PYTHON, "-m", "bench.admin_queries", path, "--output", str(output)],
        cwd=REPO_ROOT,
        env=service_env(DATABASES[which]),
        check=True,
        timeout=300,
        capture_output=True,
    )
    return json.loads(output.read_text())


def run(ctx: BenchContext) -> list[Result]:
    renders = ctx.sizes.admin_renders
    sides = {}
    for which in ("large", "small"):
        info = ctx.database(which)
        base_url = ctx.web(which)
        sides[which] = (
            base_url,
            staff_session(base_url, info["staff_username"], info["staff_password"]),
            info["jobs"],
        )
    results = []
    for label, path in PAGES:
        times: dict[str, list[float]] = {"large": [], "small": []}
        for base_url, session, _ in sides.values():
            render_seconds(session, base_url + path)  # warm caches and connections
        for _ in range(renders):
            # Alternate, so drift in the machine's load hits both sides alike.
            for which, (base_url, session, _) in sides.items():
                times[which].append(render_seconds(session, base_url + path))
        queries = {which: page_queries(ctx, which, path) for which in sides}
        large_ms = statistics.median(times["large"]) * 1000
        small_ms = statistics.median(times["small"]) * 1000
        large_jobs, small_jobs = sides["large"][2], sides["small"][2]
        results.append(
            Result(
                "P6",
                f"admin {label} at {large_jobs:,} jobs",
                "ms",
                large_ms,
                small_ms,
                f"the same page at {small_jobs:,} jobs",
                higher_is_better=False,
                details={
                    "path": path,
                    "renders": renders,
                    "large_jobs": large_jobs,
                    "small_jobs": small_jobs,
                    "large_ms": [round(t * 1000, 1) for t in times["large"]],
                    "small_ms": [round(t * 1000, 1) for t in times["small"]],
                    "queries_large": queries["large"],
                    "queries_small": queries["small"],
                },
                note=(
                    f"median of {renders} renders each; {queries['large']['count']} queries, "
                    f"{queries['large']['sql_ms']:.0f} ms of SQL at {large_jobs:,} jobs vs "
                    f"{queries['small']['sql_ms']:.0f} ms at {small_jobs:,}; slowest: "
                    + "; ".join(
                        f"{q['ms']:.0f} ms {q['sql'][:70]}…"
                        for q in queries["large"]["slowest"][:3]
                    )
                ),
            )
        )
    return results
