"""The dashboard's tape panel and a tape store's page in a real browser at 1280 and 1920 px:
nothing wider than the page. Screenshots land in tests/artifacts/admin/ (not in git)."""

import pytest

from tests.admin.test_browser import ARTIFACTS, overflow_at, staff_page
from tests.admin.test_tape_panel import library_reading

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def busy_library(transactional_db):
    return library_reading(
        "tape-library-east",
        reading={
            "mounted_vid": "VOL000123",
            "holder": "celery@worker-host-with-a-long-name:4242",
            "reading_path": "projects/2026/sequencing-run-0042/lane-3/sample-0017.fastq.gz",
            "head_position": 1234,
            "mounts": 41,
            "bytes_read": 41 * 10**10,
            "seek_seconds": 123.4,
        },
        idle={"mounted_vid": "VOL000007", "mounts": 3},
        waiting=[
            {"tape_vid": vid, "files_total": n * 7, "bytes_total": n * 10**9}
            for n, vid in enumerate(("VOL000200", "VOL000201", "VOL000202"), start=2)
        ],
        min_files=10,
    ).store


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_tape_panel_and_a_tape_store_fit_the_page(live_server, busy_library, width):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with staff_page(live_server.url, width=width) as page:
        dashboard_overflow = overflow_at(
            page, f"{live_server.url}/admin/dashboard/", "#tape-heading"
        )
        panel_text = page.inner_text(".dashboard-tape")
        page.locator(".dashboard-tape").screenshot(path=str(ARTIFACTS / f"tape-panel-{width}.png"))
        store_overflow = overflow_at(
            page,
            f"{live_server.url}/admin/staging/store/{busy_library.pk}/change/",
            "#tape_library-group",
        )
        page.screenshot(path=str(ARTIFACTS / f"tape-store-{width}.png"), full_page=True)

    assert dashboard_overflow <= 0 and store_overflow <= 0
    assert "being read" in panel_text
    assert "waiting for more: 14 of 10 files" not in panel_text  # 14 ≥ 10: eligible
    # One drive free: the biggest eligible cartridge takes it, the others wait for one.
    assert panel_text.count("eligible: mounted at the next pass") == 1
    assert panel_text.count("eligible: next when a drive frees") == 2
