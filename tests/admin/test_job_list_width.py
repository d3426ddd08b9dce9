"""The job list in a real browser (Debian's Chromium via Playwright) at laptop widths: every
column, the last ones too, is on screen without scrolling the table sideways."""

import pytest

from staging.models import JobStatus
from tests.admin.test_browser import staff_page
from tests.factories import JobFactory, StoreFactory, UserFactory


@pytest.fixture
def wide_rows(transactional_db):
    store = StoreFactory(slug="tape-library-east")
    owner = UserFactory(username="a-very-long-username-of-a-service-account")
    for status in (JobStatus.RUNNING, JobStatus.PARTIALLY_FAILED, JobStatus.NOT_STARTED):
        JobFactory(
            store=store,
            owner=owner,
            status=status,
            task="restore-content",
            files_total=123_456,
            files_done=65_432,
            files_failed=1_234,
            bytes_total=987_654_321_000,
            bytes_done=123_456_789_000,
        )


# Where the change list's last column ends, and whether its table scrolls sideways.
COLUMNS_ON_SCREEN = """() => {
    const box = document.querySelector('#changelist .results');
    const last = document.querySelector('#result_list thead th:last-child');
    return {
        scroll: box.scrollWidth, client: box.clientWidth,
        lastRight: last.getBoundingClientRect().right,
        viewport: document.documentElement.clientWidth,
        lastText: last.textContent.trim(),
    };
}"""


def assert_every_column_on_screen(results: dict, last_column: str) -> None:
    assert results["lastText"].lower() == last_column
    assert results["scroll"] <= results["client"], results
    assert results["lastRight"] <= results["viewport"], results


@pytest.mark.parametrize("width", [1280, 1400])
def test_every_column_of_the_job_list_is_on_screen(live_server, wide_rows, width):
    with staff_page(live_server.url, width=width) as page:
        page.goto(f"{live_server.url}/admin/staging/job/")
        page.wait_for_selector("#result_list")
        results = page.evaluate(COLUMNS_ON_SCREEN)
    assert_every_column_on_screen(results, "duration")
