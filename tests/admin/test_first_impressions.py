"""What a staff member meets first: the index, the links from a job to its rows, a cancelled
job's page, who cancelled it, the dashboard's failures and its charts."""

import re
from datetime import timedelta

from django.utils import timezone

from staging.admin.charts import Segment, nice_ceiling_bytes, stacked_bar_chart
from staging.admin.dashboard import job_count_text
from staging.models import Job, JobStatus, Pin
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory

# The chart's tick labels are 12 units high; a character is at most about 7.5 units wide.
TICK_FONT, CHAR_WIDTH = 12, 7.5  # as staging.admin.charts draws them


def page_of(job) -> str:
    return f"/admin/staging/job/{job.pk}/change/"


def cancelled_before_staging(files: int = 3) -> Job:
    store = StoreFactory(slug="primary")
    job = JobFactory(store=store, status=JobStatus.CANCELLED, files_total=files)
    subjob = SubJobFactory(job=job, sequence=1, status=JobStatus.CANCELLED)
    for n in range(files):
        ItemFactory(job=job, subjob=subjob, path=f"never/{n}.dat", status=JobStatus.CANCELLED)
        Pin.objects.create(
            job=job, store=store, path=f"never/{n}.dat", expires_at=timezone.now() + timedelta(1)
        )
    return job


def test_the_staging_section_comes_first_on_the_index(operator_client):
    page = operator_client.get("/admin/").content.decode()
    sections = re.findall(r'<caption>\s*<a[^>]*class="section"[^>]*>([^<]+)</a>', page)
    assert sections[0] == "Staging", sections


def test_a_jobs_rows_are_linked_by_its_public_id(operator_client):
    job = cancelled_before_staging()
    page = operator_client.get(page_of(job)).content.decode()
    assert f"/admin/staging/item/?job={job.uuid}" in page
    assert f"/admin/staging/pin/?job={job.uuid}" in page
    assert f"?job={job.pk}&" not in page and f'?job={job.pk}"' not in page


def test_the_by_job_filter_shows_the_public_id_even_when_given_the_row_number(operator_client):
    job = cancelled_before_staging()
    page = operator_client.get(f"/admin/staging/item/?job={job.pk}").content.decode()
    assert f'name="job" value="{job.uuid}"' in page
    assert "stage for" in page and "Cancelled" in page


def test_a_cancelled_job_does_not_count_pins_on_files_it_never_staged(operator_client):
    job = cancelled_before_staging(files=3)
    page = operator_client.get(page_of(job)).content.decode()
    assert "Pins: 3 live" not in page
    assert "Pins: 0 on staged copies" in page
    assert "3 on files this job never staged" in page


def test_a_cancel_from_the_admin_records_who_and_when_and_the_page_says_so(
    operator, operator_client
):
    job = JobFactory(owner=UserFactory(username="ann"), status=JobStatus.RUNNING)
    SubJobFactory(job=job, sequence=1, status=JobStatus.RUNNING)
    before = timezone.now()

    operator_client.post(f"/admin/staging/job/{job.pk}/act/cancel/")

    job.refresh_from_db()
    assert job.cancelled_by == operator
    assert before <= job.cancelled_at <= timezone.now()
    page = operator_client.get(page_of(job)).content.decode()
    assert "Cancelled by <strong>olivia</strong>" in page


def test_the_dashboards_failures_show_the_items_errors(operator_client):
    job = JobFactory(
        status=JobStatus.FAILED, files_total=2, files_failed=2, finished_at=timezone.now()
    )
    ItemFactory(job=job, path="run2/b.txt", status=JobStatus.FAILED, error="source file missing")
    ItemFactory(job=job, path="run2/c.txt", status=JobStatus.FAILED, error="source file missing")

    page = operator_client.get("/admin/dashboard/").content.decode()

    assert "see the job&#x27;s failed items" not in page
    assert "2 files: source file missing" in page


def test_the_dashboards_failures_count_errors_by_reason_with_their_first_paths(operator_client):
    job = JobFactory(
        status=JobStatus.FAILED, files_total=3, files_failed=3, finished_at=timezone.now()
    )
    for path in ("run2/b.txt", "run2/c.txt", "run2/d.txt"):
        ItemFactory(
            job=job, path=path, status=JobStatus.FAILED, error=f"source file not found: {path}"
        )

    page = operator_client.get("/admin/dashboard/").content.decode()

    assert "3 files: source file not found (run2/b.txt, run2/c.txt and 1 more)" in page


def test_every_tick_label_of_the_bytes_chart_fits_in_the_drawing():
    for peak in (900, 999_000, 990_000_000, 7e10, 999e9):
        chart = stacked_bar_chart(
            title="Bytes staged per hour",
            columns=[("00:00", [Segment(peak, "bytes-staged", "staged")])],
            legend=[],
            value_format=lambda v: f"{int(v)} bytes" if v < 1024 else _human(v),
            ceiling=nice_ceiling_bytes,
        )
        for y, label in chart.y_ticks:
            assert y - TICK_FONT / 2 >= 2, (peak, label, y)  # not cut at the top
            assert len(label) * CHAR_WIDTH <= chart.plot_left - 6, (peak, label)  # nor the left


def _human(value: float) -> str:
    from django.template.defaultfilters import filesizeformat

    return filesizeformat(int(value))


def test_the_jobs_charts_middle_tick_says_the_value_it_is_drawn_at():
    chart = stacked_bar_chart(
        title="Jobs ended per hour",
        columns=[("00:00", [Segment(4, "status-finished", "finished")])],
        legend=[],
        value_format=job_count_text,
    )
    assert [label for _, label in chart.y_ticks] == ["0", "2.5", "5"]
