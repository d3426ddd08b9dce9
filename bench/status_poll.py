"""P1 status poll: requests/s and latency of the status endpoints under 64 concurrent clients
(wrk), beside a bare Django view doing one primary-key lookup, on the same gunicorn, with the
large seeded database.

An endpoint whose route is not in the service yet (peek, until the public API lands) is
reported as n/a; adding an endpoint is one line in ``ENDPOINTS``."""

import statistics
from dataclasses import dataclass
from pathlib import Path

import requests
from django.urls import Resolver404, resolve

from bench.context import BenchContext, request_queries
from bench.harness import Result
from bench.loadgen import LoadReport, run_wrk
from bench.profiling import format_summary, summarise_file


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    # {pk} and {uuid} are filled in per request by poll.lua.
    path: str
    authenticated: bool = True


BASELINE = Endpoint(
    "baseline",
    "bare Django view: one primary-key lookup, JSON",
    "/bench/baseline/status?id={pk}",
    authenticated=False,
)
ENDPOINTS = [
    Endpoint("dts", "GET /dts/staging?id=", "/dts/staging?id={uuid}"),
    Endpoint("peek", "GET /api/v1/task_status/{id}/peek", "/api/v1/task_status/{uuid}/peek"),
]
PROFILE_BELOW = 0.9


def fill(path: str, pk: int, job_uuid: str) -> str:
    return path.replace("{pk}", str(pk)).replace("{uuid}", job_uuid)


def route_exists(endpoint: Endpoint, pk: int, job_uuid: str) -> bool:
    """Whether the service (plus the bench's URLs) routes this endpoint at all."""
    try:
        resolve(fill(endpoint.path, pk, job_uuid).partition("?")[0])
    except Resolver404:
        return False
    return True


def check_answer(base_url: str, endpoint: Endpoint, pk: int, job_uuid: str, token: str) -> None:
    """One request by hand: load figures of an endpoint that answers errors are worthless."""
    headers = {"Authorization": f"Bearer {token}"} if endpoint.authenticated else {}
    response = requests.get(base_url + fill(endpoint.path, pk, job_uuid), headers=headers)
    if response.status_code != 200 or "status" not in response.json():
        raise RuntimeError(
            f"{endpoint.label} answered {response.status_code}: {response.text[:300]}"
        )


def queries_per_request(endpoint: Endpoint, info: dict) -> int:
    """Queries of one poll, counted in this process on the small database (the count does not
    depend on the table's size)."""
    pk, job_uuid = info["sample"][0]
    path = fill(endpoint.path, pk, job_uuid)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {info['token']}"} if endpoint.authenticated else {}
    request_queries("GET", path, **headers)  # the first one opens the connection
    return request_queries("GET", path, **headers)


def pooled_report(reports: list[LoadReport]) -> LoadReport:
    """The rounds of one endpoint as one: requests over seconds, median of the percentiles."""
    return LoadReport(
        requests=sum(r.requests for r in reports),
        seconds=sum(r.seconds for r in reports),
        p50_ms=statistics.median(r.p50_ms for r in reports),
        p99_ms=statistics.median(r.p99_ms for r in reports),
        mean_ms=statistics.mean(r.mean_ms for r in reports),
        errors=sum(r.errors for r in reports),
    )


def poll_target(ctx: BenchContext) -> tuple[dict, str, Path]:
    """The large database (what bench.prepare reported), its gunicorn's URL, and the file of
    sampled job ids the load generators pick from."""
    info = ctx.database("large")
    base_url = ctx.web("large")
    ids_file = ctx.temp_dir / "poll-ids.txt"
    ids_file.write_text("".join(f"{p} {u}\n" for p, u in info["sample"]))
    return info, base_url, ids_file


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    info, base_url, ids_file = poll_target(ctx)
    token = info["token"]
    pk, job_uuid = info["sample"][0]

    present = [e for e in ENDPOINTS if route_exists(e, pk, job_uuid)]
    measured = [BASELINE, *present]
    for endpoint in measured:
        check_answer(base_url, endpoint, pk, job_uuid, token)

    def load(endpoint: Endpoint, seconds: int) -> LoadReport:
        report = run_wrk(
            base_url=base_url,
            path_template=endpoint.path,
            ids_file=ids_file,
            token=token if endpoint.authenticated else "",
            connections=sizes.poll_connections,
            seconds=seconds,
        )
        if report.errors > report.requests * 0.001:
            raise RuntimeError(f"{endpoint.label}: {report.errors} errors in {report.requests}")
        return report

    for endpoint in measured:
        load(endpoint, sizes.poll_warmup_seconds)
    reports: dict[str, list[LoadReport]] = {e.key: [] for e in measured}
    for round_number in range(sizes.poll_rounds):
        # Each round starts with a different endpoint, so drift favours none of them.
        shift = round_number % len(measured)
        for endpoint in measured[shift:] + measured[:shift]:
            reports[endpoint.key].append(load(endpoint, sizes.poll_seconds))

    if ctx.profile:
        # Separate, unmeasured runs: the sampler takes CPU the measured runs must not lose.
        for endpoint in measured:
            path = ctx.profile_path(f"P1-{endpoint.key}")
            with ctx.profiler(f"P1-{endpoint.key}", ctx.web_pid("large")):
                load(endpoint, sizes.poll_seconds)
            summary = summarise_file(path)
            ctx.profiles[f"P1 {endpoint.key}"] = summary
            print(format_summary(f"P1 {endpoint.label}", summary))

    small = ctx.database("small")
    queries = {e.key: queries_per_request(e, small) for e in measured}
    baseline = pooled_report(reports[BASELINE.key])
    common = {
        "jobs_in_database": info["jobs"],
        "connections": sizes.poll_connections,
        "seconds_per_round": sizes.poll_seconds,
        "rounds": sizes.poll_rounds,
        "baseline": baseline.as_dict(),
        "baseline_queries_per_request": queries[BASELINE.key],
    }
    results = []
    for endpoint in ENDPOINTS:
        name = f"status poll {endpoint.label}"
        if endpoint not in present:
            results.append(
                Result(
                    "P1",
                    name,
                    "requests/s",
                    None,
                    baseline.requests_per_second,
                    BASELINE.label,
                    profile_below=PROFILE_BELOW,
                    details=common,
                    note="n/a: the route is not in the service yet",
                )
            )
            continue
        ours = pooled_report(reports[endpoint.key])
        results.append(
            Result(
                "P1",
                name,
                "requests/s",
                ours.requests_per_second,
                baseline.requests_per_second,
                BASELINE.label,
                profile_below=PROFILE_BELOW,
                details={
                    **common,
                    "ours": ours.as_dict(),
                    "rounds_requests_per_second": [
                        round(r.requests_per_second, 1) for r in reports[endpoint.key]
                    ],
                    "queries_per_request": queries[endpoint.key],
                    "p50_ratio": _ratio(baseline.p50_ms, ours.p50_ms),
                    "p99_ratio": _ratio(baseline.p99_ms, ours.p99_ms),
                },
                note=(
                    f"p50 {ours.p50_ms:.1f} ms vs {baseline.p50_ms:.1f} ms, "
                    f"p99 {ours.p99_ms:.1f} ms vs {baseline.p99_ms:.1f} ms; "
                    f"{queries[endpoint.key]} queries vs {queries[BASELINE.key]}; "
                    f"{info['jobs']:,} jobs"
                ),
            )
        )
    return results


def _ratio(baseline_ms: float, ours_ms: float) -> float | None:
    return round(baseline_ms / ours_ms, 3) if ours_ms else None
