"""Each item's times in the admin: the item list and an item's page show when it was queued,
started, finished, pinned until and released, the list at laptop widths in a real browser
(Debian's Chromium via Playwright) with every column on screen. Screenshots land in
tests/artifacts/admin/ (not in git)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from staging.models import JobStatus, Pin
from tests.admin.conftest import staff
from tests.admin.test_browser import ARTIFACTS, staff_page
from tests.admin.test_job_list_width import COLUMNS_ON_SCREEN, assert_every_column_on_screen
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory

ITEMS = "/admin/staging/item/"
COLUMNS = ["Queued", "Started", "Finished", "Pinned until", "Released"]


def staged_job(**job_fields):
    """A partly failed job: a file staged and pinned, one staged and released, one failed."""
    store = StoreFactory(slug="tape-library-east")
    job = JobFactory(
        store=store,
        owner=UserFactory(username="a-very-long-username-of-a-service-account"),
        status=JobStatus.PARTIALLY_FAILED,
        **job_fields,
    )
    now = timezone.now()
    subjob = SubJobFactory(job=job, sequence=1)
    type(subjob).objects.filter(pk=subjob.pk).update(created_at=now - timedelta(minutes=5))
    files = {
        "run2026/sequencing/lane-1/reads_R1.fastq.gz": (JobStatus.FINISHED, ""),
        "run2026/sequencing/lane-1/reads_R2.fastq.gz": (JobStatus.FINISHED, ""),
        "run2026/sequencing/lane-2/reads_R1.fastq.gz": (JobStatus.FAILED, "deadline exceeded"),
    }
    for path, (status, error) in files.items():
        ItemFactory(
            job=job,
            subjob=subjob,
            path=path,
            status=status,
            error=error,
            size=123_456_789,
            bytes_done=123_456_789 if status == JobStatus.FINISHED else 0,
            attempts=1,
            started_at=now - timedelta(minutes=3) if status == JobStatus.FINISHED else None,
            finished_at=now - timedelta(minutes=1),
        )
        Pin.objects.create(job=job, store=store, path=path, expires_at=now + timedelta(days=14))
    Pin.objects.filter(job=job, path__endswith="R2.fastq.gz").update(released_at=now)
    return job


def test_the_item_list_and_page_show_the_five_times(db):
    job = staged_job()
    client = Client()
    client.force_login(staff("heidi", "data-admin"))

    page = client.get(f"{ITEMS}?job={job.uuid}").content.decode()

    for column in COLUMNS:
        assert f">{column}<" in page.replace('">', ">"), column
    item = job.items.get(path__endswith="R2.fastq.gz")
    detail = client.get(f"{ITEMS}{item.pk}/change/").content.decode()
    assert "Pinned until" in detail and "Released" in detail
    local = timezone.localtime(Pin.objects.get(job=job, path=item.path).released_at)
    assert f"{local:%Y-%m-%d}<br>{local:%H:%M:%S}" in detail


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_column_of_the_item_list_is_on_screen(live_server, transactional_db, width):
    job = staged_job()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with staff_page(live_server.url, width=width) as page:
        page.goto(f"{live_server.url}{ITEMS}?job={job.uuid}")
        page.wait_for_selector("#result_list")
        page.screenshot(path=ARTIFACTS / f"item-list-{width}.png", full_page=True)
        page.click("#result_list tbody tr:nth-child(2) th a")
        page.wait_for_selector(".field-pinned_until_shown")
        page.screenshot(path=ARTIFACTS / f"item-page-{width}.png", full_page=True)
        page.goto(f"{live_server.url}{ITEMS}?job={job.uuid}")
        page.wait_for_selector("#result_list")
        results = page.evaluate(COLUMNS_ON_SCREEN)
    assert_every_column_on_screen(results, "released")
