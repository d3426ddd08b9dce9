"""The dashboard's Dispatch panel and a waiting job's page in a real browser (Debian's Chromium
via Playwright) at 1280 and 1920 px: nothing runs off the page sideways. Screenshots land in
tests/artifacts/admin/ (not in git)."""

import pytest
from django.utils import timezone

from staging.models import AccountLimits, JobStatus, SubJob
from tests.admin.test_browser import ARTIFACTS, overflow_at, staff_page
from tests.factories import JobFactory, StoreFactory, UserFactory


@pytest.fixture
def waiting_work(transactional_db, settings):
    """Stores, owners and priorities enough to fill every part of the panel; returns a job that
    waits for its store's limit."""
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 16}
    tape = StoreFactory(slug="tape-library-east", max_active=2)
    disk = StoreFactory(slug="disk-cache")
    full = StoreFactory(
        slug="scratch", free_space_low="10%", staging_full_since=timezone.now(), max_active=8
    )
    owners = [
        UserFactory(username=name)
        for name in ("alice", "bob", "a-very-long-username-of-a-service-account", "dora")
    ]
    AccountLimits.objects.create(user=owners[3], max_active_subjobs=1, dispatch_weight=3)
    now = timezone.now()
    shown = None
    for number, (store, owner, priority, running, waiting) in enumerate(
        [
            (tape, owners[0], 3, 2, 4_000),
            (tape, owners[1], 3, 0, 10),
            (disk, owners[2], 5, 3, 120),
            (disk, owners[3], 3, 1, 40),
            (full, owners[1], 1, 0, 25),
        ]
    ):
        job = JobFactory(
            store=store,
            owner=owner,
            priority=priority,
            status=JobStatus.RUNNING if running else JobStatus.NOT_STARTED,
            files_total=running + waiting,
        )
        SubJob.objects.bulk_create(
            [
                SubJob(job=job, sequence=n, status=JobStatus.RUNNING, dispatched_at=now)
                for n in range(1, running + 1)
            ]
            + [SubJob(job=job, sequence=running + n) for n in range(1, waiting + 1)]
        )
        if number == 1:
            shown = job
    return shown


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_dispatch_panel_and_a_waiting_job_fit_the_page(live_server, waiting_work, width):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with staff_page(live_server.url, width=width) as page:
        dashboard_overflow = overflow_at(
            page, f"{live_server.url}/admin/dashboard/", "#dispatch-heading"
        )
        panel_text = page.inner_text(".dashboard-dispatch")
        page.locator(".dashboard-dispatch").screenshot(
            path=str(ARTIFACTS / f"dispatch-panel-{width}.png")
        )
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{width}.png"), full_page=True)
        job_overflow = overflow_at(
            page, f"{live_server.url}/admin/staging/job/{waiting_work.pk}/change/", ".job-waiting"
        )
        waiting_text = page.inner_text(".job-waiting")
        page.screenshot(path=str(ARTIFACTS / f"waiting-job-{width}.png"), full_page=True)

    assert dashboard_overflow <= 0
    assert job_overflow <= 0
    assert "2 / 2" in panel_text
    assert waiting_text == "Waiting: store tape-library-east at its limit (2 of 2 in flight)"
