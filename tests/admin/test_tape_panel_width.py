"""The dashboard's tape panel and a tape store's page in a real browser at 1280 and 1920 px:
nothing wider than the page. Screenshots land in tests/artifacts/admin/ (not in git)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from staging.models import JobStatus, StoreKind, SubJob, TapeDrive, TapeLibrary
from tests.admin.test_browser import ARTIFACTS, staff_page
from tests.factories import JobFactory, StoreFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def busy_library(transactional_db):
    store = StoreFactory(slug="tape-library-east", kind=StoreKind.POSIX_TAPE)
    library = TapeLibrary.objects.create(store=store, drives=2, min_files=10)
    now = timezone.now()
    TapeDrive.objects.create(
        library=library,
        number=1,
        mounted_vid="VOL000123",
        holder="celery@worker-host-with-a-long-name:4242",
        holder_vid="VOL000123",
        reading_path="projects/2026/sequencing-run-0042/lane-3/sample-0017.fastq.gz",
        head_position=1234,
        lease_expires_at=now + timedelta(minutes=5),
        mounts=41,
        bytes_read=41 * 10**10,
        seek_seconds=123.4,
    )
    TapeDrive.objects.create(library=library, number=2, mounted_vid="VOL000007", mounts=3)
    job = JobFactory(store=store, status=JobStatus.RUNNING)
    SubJob.objects.create(
        job=job, sequence=1, tape_vid="VOL000123", status=JobStatus.RUNNING, dispatched_at=now
    )
    for n, vid in enumerate(("VOL000200", "VOL000201", "VOL000202"), start=2):
        SubJob.objects.create(
            job=job, sequence=n, tape_vid=vid, files_total=n * 7, bytes_total=n * 10**9
        )
    return store


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_tape_panel_and_a_tape_store_fit_the_page(live_server, busy_library, width):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    with staff_page(live_server.url, width=width) as page:
        page.goto(f"{live_server.url}/admin/dashboard/")
        page.wait_for_selector("#tape-heading")
        dashboard_overflow = page.evaluate(overflow)
        panel_text = page.inner_text(".dashboard-tape")
        page.locator(".dashboard-tape").screenshot(path=str(ARTIFACTS / f"tape-panel-{width}.png"))
        page.goto(f"{live_server.url}/admin/staging/store/{busy_library.pk}/change/")
        page.wait_for_selector("#tape_library-group")
        store_overflow = page.evaluate(overflow)
        page.screenshot(path=str(ARTIFACTS / f"tape-store-{width}.png"), full_page=True)

    assert dashboard_overflow <= 0 and store_overflow <= 0
    assert "being read" in panel_text
    assert "waiting for more: 14 of 10 files" not in panel_text  # 14 ≥ 10: eligible
    # One drive free: the biggest eligible cartridge takes it, the others wait for one.
    assert panel_text.count("eligible: mounted at the next pass") == 1
    assert panel_text.count("eligible: next when a drive frees") == 2
