"""A staff member in a real browser (Debian's Chromium driven by Playwright) against the live
server: log in, filter the job list, open a job, cancel it, and see the result. Screenshots of
each step land in tests/artifacts/admin/ (not in git)."""

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from staging.models import Job, JobStatus
from tests.admin.conftest import staff
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "admin"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_or_skip():
    """Playwright's sync API, or a skip when it or Chromium is missing (a failure in CI, where
    .ci/run installs Chromium and make installs Playwright)."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if problem:
        if settings.CI:
            pytest.fail(f"the browser test cannot run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@contextmanager
def staff_page(live_server_url: str, *, width: int, height: int = 900) -> Iterator:
    """A Chromium page ``width`` px wide, logged in as a data-admin staff member by the session
    cookie a test client made (no login form). No database access while it is open:
    Playwright's sync API runs an event loop in this thread."""
    sync_playwright = browser_or_skip()
    client = Client()
    client.force_login(staff("heidi", "data-admin"))
    session = {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": live_server_url,
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.context.add_cookies([session])
            yield page
        finally:
            browser.close()


def overflow_at(page, url: str, ready: str) -> int:
    """Open ``url`` and, once ``ready`` (a selector) is shown, how many pixels the page runs
    off sideways (0 or less: none)."""
    page.goto(url)
    page.wait_for_selector(ready)
    return page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


@pytest.fixture
def jobs_to_steer(transactional_db):
    store = StoreFactory(slug="tape-lib")
    owner = UserFactory(username="grace")
    target = JobFactory(store=store, owner=owner, status=JobStatus.RUNNING, files_total=1)
    subjob = SubJobFactory(job=target, sequence=1)
    ItemFactory(job=target, subjob=subjob, path="run9/reads.fastq")
    JobFactory(store=store, owner=owner, status=JobStatus.FAILED, error="archive offline")
    JobFactory(store=store, owner=owner, status=JobStatus.FINISHED)
    return target


def test_a_staff_member_finds_a_running_job_and_cancels_it(live_server, jobs_to_steer, tmp_path):
    sync_playwright = browser_or_skip()
    staff("heidi", "data-admin")
    target = jobs_to_steer
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    short_id = str(target.uuid)[:8]

    # No database access from here until the browser is closed: Playwright's sync API runs an
    # event loop in this thread, and Django refuses ORM calls from inside one.
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.goto(f"{live_server.url}/admin/login/?next=/admin/staging/job/")
            page.fill("#id_username", "heidi")
            page.fill("#id_password", "correct horse battery staple")
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/staging/job/")
            assert page.locator("#result_list tbody tr").count() == 3
            page.screenshot(path=ARTIFACTS / "1-job-list.png", full_page=True)

            page.click("#changelist-filter a[href='?status__exact=RUNNING']")
            page.wait_for_url("**/admin/staging/job/?status__exact=RUNNING")
            rows = page.locator("#result_list tbody tr")
            assert rows.count() == 1
            assert rows.first.locator(".badge").inner_text() == "Running"
            page.screenshot(path=ARTIFACTS / "2-filtered-running.png", full_page=True)

            page.click(f"text={short_id}…")
            # The list's filters ride along in the query string (_changelist_filters).
            page.wait_for_url(re.compile(rf"/admin/staging/job/{target.pk}/change/"))
            assert page.locator(".job-headline .badge").inner_text() == "Running"
            assert "tape-lib" in page.locator(".job-headline").inner_text()
            page.screenshot(path=ARTIFACTS / "3-job-page.png", full_page=True)

            page.click("button.job-action-cancel")
            page.wait_for_load_state()
            assert page.locator(".messagelist .success").inner_text() == (
                f"Cancelled 1 job: {target.uuid}."
            )
            assert page.locator(".job-headline .badge").inner_text() == "Cancelled"
            assert page.locator("button.job-action-cancel").count() == 0
            page.screenshot(path=ARTIFACTS / "4-job-cancelled.png", full_page=True)

            page.goto(f"{live_server.url}/admin/dashboard/")
            assert "Jobs by status now" in page.inner_text("#content-main")
            page.screenshot(path=ARTIFACTS / "5-dashboard.png", full_page=True)
        finally:
            context.close()

    target.refresh_from_db()
    assert target.status == JobStatus.CANCELLED
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 1
