"""The job list: what each row shows, the filters, the search, and its cost per page."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from staging.admin.paginator import EstimatedCountPaginator
from staging.models import Job, JobStatus
from tests.factories import FileFactory, ItemFactory, JobFactory, StoreFactory, UserFactory

LIST = "/admin/staging/job/"


def rows(response) -> list[str]:
    """The job ids (first block) shown in the result table, top to bottom."""
    return [job.uuid.hex[:8] for job in response.context["cl"].result_list]


def short(job: Job) -> str:
    return job.uuid.hex[:8]


def test_it_shows_each_job_with_its_status_badge_progress_and_duration(operator_client):
    store = StoreFactory(slug="tape-archive")
    job = JobFactory(
        store=store,
        owner=UserFactory(username="carol"),
        task="stage",
        status=JobStatus.RUNNING,
        files_total=10,
        files_done=4,
        files_failed=1,
        bytes_total=10 * 1024**2,
        bytes_done=4 * 1024**2,
        started_at=timezone.now() - timedelta(minutes=5, seconds=3),
    )

    response = operator_client.get(LIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert f'title="{job.uuid}">{str(job.uuid)[:8]}…</span>' in page
    assert "tape-archive" in page and "carol" in page
    assert '<span class="badge status-running">Running</span>' in page
    # filesizeformat joins number and unit with a no-break space
    assert "4 / 10 files, 1 failed · 4.0\xa0MB / 10.0\xa0MB" in page
    assert '<rect class="files-done" width="40.0"' in page
    assert '<rect class="files-failed" x="40.0" width="10.0"' in page
    assert "5 min 3 s" in page


def test_a_job_waiting_for_a_worker_shows_how_long_it_has_been_queued(operator_client):
    JobFactory(status=JobStatus.NOT_STARTED)
    Job.objects.update(created_at=timezone.now() - timedelta(hours=2, minutes=1))

    page = operator_client.get(LIST).content.decode()

    assert "queued 2 h 1 min" in page


def test_the_newest_jobs_come_first(operator_client):
    old, new = JobFactory(), JobFactory()
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))

    assert rows(operator_client.get(LIST)) == [short(new), short(old)]


def test_it_filters_by_status(operator_client):
    failed = JobFactory(status=JobStatus.FAILED)
    JobFactory(status=JobStatus.FINISHED)

    response = operator_client.get(LIST, {"status__exact": "FAILED"})

    assert rows(response) == [short(failed)]


def test_it_filters_by_task_offering_the_tasks_in_use(operator_client):
    restore = JobFactory(task="restore-content")
    JobFactory(task="stage")

    response = operator_client.get(LIST, {"task": "restore-content"})

    assert rows(response) == [short(restore)]
    page = response.content.decode()
    assert "?task=stage" in page and "?task=restore-content" in page


def test_it_filters_by_store(operator_client):
    tape = StoreFactory(slug="tape")
    on_tape = JobFactory(store=tape)
    JobFactory(store=StoreFactory(slug="disk"))

    response = operator_client.get(LIST, {"store__id__exact": tape.pk})

    assert rows(response) == [short(on_tape)]


def test_it_filters_by_owner_typed_by_name_not_picked_from_a_list(operator_client):
    dave = UserFactory(username="dave")
    his = JobFactory(owner=dave)
    JobFactory(owner=UserFactory(username="erin"))

    response = operator_client.get(LIST, {"owner": "dave"})

    assert rows(response) == [short(his)]
    page = response.content.decode()
    assert 'name="owner" value="dave"' in page
    # No dropdown of users: the other owner's name is not offered anywhere.
    assert "erin" not in page


def test_it_filters_by_creation_date(operator_client):
    today = JobFactory()
    last_year = JobFactory()
    Job.objects.filter(pk=last_year.pk).update(created_at=timezone.now() - timedelta(days=400))

    response = operator_client.get(
        LIST, {"created_at__gte": str(timezone.now() - timedelta(days=7))}
    )

    assert rows(response) == [short(today)]


def test_the_date_hierarchy_offers_only_years_that_have_jobs(operator_client):
    for year in (2023, 2025):
        job = JobFactory()
        Job.objects.filter(pk=job.pk).update(created_at=datetime(year, 6, 1, tzinfo=UTC))

    page = operator_client.get(LIST).content.decode()

    assert "?created_at__year=2023" in page and "?created_at__year=2025" in page
    assert "created_at__year=2024" not in page


def test_the_date_hierarchy_drills_down_to_the_days_of_a_month(operator_client):
    job = JobFactory()
    Job.objects.filter(pk=job.pk).update(created_at=datetime(2025, 6, 17, 12, tzinfo=UTC))

    response = operator_client.get(LIST, {"created_at__year": 2025, "created_at__month": 6})

    page = response.content.decode()
    assert rows(response) == [short(job)]
    assert "created_at__day=17" in page
    assert "created_at__day=16" not in page


def test_search_finds_a_job_by_its_id(operator_client):
    wanted = JobFactory()
    JobFactory()

    assert rows(operator_client.get(LIST, {"q": str(wanted.uuid)})) == [short(wanted)]


def test_search_finds_the_jobs_that_staged_a_file_by_its_id(operator_client):
    store = StoreFactory()
    file = FileFactory(store=store, path="run7/reads.fastq")
    wanted = JobFactory(store=store)
    ItemFactory(job=wanted, file=file, path=file.path)
    ItemFactory(job=JobFactory(store=store), path="run7/other.fastq")

    assert rows(operator_client.get(LIST, {"q": file.id})) == [short(wanted)]


def test_the_item_list_finds_a_files_items_by_its_id(operator_client):
    store = StoreFactory()
    file = FileFactory(store=store, path="run7/reads.fastq")
    ItemFactory(job=JobFactory(store=store), file=file, path=file.path)
    ItemFactory(job=JobFactory(store=store), path="run7/reads.fastq.md5")
    gone = FileFactory(store=store, path="run7/gone.fastq")
    gone_id = gone.id
    gone.delete()

    found = operator_client.get("/admin/staging/item/", {"q": file.id}).content.decode()
    not_found = operator_client.get("/admin/staging/item/", {"q": gone_id}).content.decode()

    assert "run7/reads.fastq<" in found
    assert "run7/reads.fastq.md5" not in found
    assert "0 results" in not_found


def test_search_finds_jobs_by_a_path_or_the_start_of_one(operator_client):
    first, second, other = JobFactory(), JobFactory(), JobFactory()
    ItemFactory(job=first, path="run1/a.fastq")
    ItemFactory(job=first, path="run1/b.fastq")
    ItemFactory(job=second, path="run1/sub/c.fastq")
    ItemFactory(job=other, path="run2/a.fastq")

    assert rows(operator_client.get(LIST, {"q": "run1/"})) == [short(second), short(first)]
    assert rows(operator_client.get(LIST, {"q": "run1/a.fastq"})) == [short(first)]


def test_search_for_something_unknown_shows_no_job(operator_client):
    JobFactory()

    response = operator_client.get(LIST, {"q": "no/such/path"})

    assert rows(response) == []
    assert "0 results" in response.content.decode()


def test_a_list_too_long_to_count_shows_an_estimate_and_next_links(operator_client, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 3)
    JobFactory.create_batch(5)

    with monkeypatch.context() as m:
        m.setattr("staging.admin.jobs.JobAdmin.list_per_page", 2)
        page = operator_client.get(LIST).content.decode()

    assert 'class="estimated-count">about' in page
    assert 'href="?p=2" class="page-next">next' in page
    assert "page-previous" not in page


@pytest.mark.parametrize("jobs", [10, 50])
def test_the_list_costs_the_same_queries_for_10_or_50_jobs(
    operator_client, django_assert_num_queries, jobs
):
    store = StoreFactory()
    for n in range(jobs):
        JobFactory(store=store, owner=UserFactory(username=f"owner{n}"))
    operator_client.get(LIST)  # the session and the permission cache settle on the first view

    # session, user, 2 permission lookups, task names, stores, count, rows, date span, and the
    # date probes: one UNION ALL query on PostgreSQL, one query per month of the year on SQLite
    expected = 10 if connection.vendor == "postgresql" else 9 + 12
    with django_assert_num_queries(expected):
        response = operator_client.get(LIST)

    assert len(response.context["cl"].result_list) == jobs


def test_the_list_does_not_count_the_whole_table(operator_client):
    JobFactory.create_batch(3)

    with CaptureQueriesContext(connection) as queries:
        operator_client.get(LIST)

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_people_who_are_not_staff_are_sent_to_the_login_page(db, client):
    user = UserFactory(username="mallory")
    client.force_login(user)

    response = client.get(LIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads a PostgreSQL plan")
def test_the_date_hierarchy_probes_read_the_created_at_index(operator_client):
    # A bare LIMIT 1 probe lets the planner pick a sequential scan, which, started where
    # another scan left off (synchronized scans) on a table laid out by time, read 470,000 rows
    # of a million-job table before the first of the year it probed.
    # Enough rows, laid out by time, that a plan for the table is a plan for a big one.
    template = JobFactory()
    fields = {
        f.attname: getattr(template, f.attname)
        for f in Job._meta.concrete_fields
        if f.attname not in ("id", "uuid")
    }
    Job.objects.bulk_create([Job(**fields, uuid=uuid.uuid4()) for _ in range(20_000)])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE staging_job SET created_at = TIMESTAMPTZ '2023-01-01' + id * INTERVAL '1 hour'"
        )
        cursor.execute("ANALYZE staging_job")

    with CaptureQueriesContext(connection) as captured:
        operator_client.get(LIST)

    probes = [q["sql"] for q in captured.captured_queries if 'AS "bucket"' in q["sql"]]
    assert probes
    with connection.cursor() as cursor:
        for probe in probes:
            cursor.execute(f"EXPLAIN {probe}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan" not in plan, plan
