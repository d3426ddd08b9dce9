"""The task registry: what each store kind is offered, how a task is added, and how a worker
finds the work of a job's task. Sub-jobs are run in this process (the integration tier runs
the same code in real workers)."""

import types
from pathlib import Path

import pytest
from rest_framework import serializers

from staging.api.tasks import parameters_schema
from staging.catalogue import (
    TaskParameters,
    TaskType,
    item_work_for,
    register,
    task_type_get,
    task_types,
    unregister,
)
from staging.models import Item, Job, JobStatus, StoreKind
from staging.services.execution import item_result_record, subjob_run
from staging.services.jobs import job_create
from staging.services.tasks import task_perform
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run_all(job: Job) -> Job:
    for subjob in job.subjobs.filter(status=JobStatus.NOT_STARTED):
        subjob_run(subjob_id=subjob.pk, worker="node@host:1", task_id="t", work_for=item_work_for)
    job.refresh_from_db()
    return job


def test_every_task_module_is_registered_with_a_description_and_a_schema():
    names = [task.name for task in task_types()]
    assert names == ["checksum", "noop", "release", "restore-content", "scan", "stage"]
    for task in task_types():
        assert task.description.endswith(".")
        assert parameters_schema(task.parameters)["type"] == "object"


def test_restore_content_is_offered_on_tape_stores_only(store, tape_store):
    restore = task_type_get("restore-content")
    assert restore.store_kinds == {StoreKind.POSIX_TAPE}
    assert not restore.supports(store) and restore.supports(tape_store)


class WordCountParameters(TaskParameters):
    """Files whose words to count."""

    paths = serializers.ListField(child=serializers.CharField())


def count_words(item, store, reporter):
    words = len((Path(store.archive_root) / item.path).read_text().split())
    item_result_record(item_id=item.pk, result={"words": words})


@pytest.fixture
def word_count_task():
    """A task defined the way a new module would define it, registered for one test."""

    def create(request):
        return job_create(
            owner=request.owner,
            store=request.store,
            task="word-count",
            source=request.source,
            items=[Item(path=p, size=0) for p in request.parameters["paths"]],
        )

    task = register(
        TaskType(
            name="word-count",
            description="Count the words of text files.",
            parameters=WordCountParameters,
            create=create,
            work=count_words,
            result_columns=("path", "status", "words"),
        )
    )
    yield task
    unregister(task.name)


def test_a_registered_task_is_listed_performed_and_run_like_the_others(
    client_for, store, archive_files, word_count_task
):
    archive_files({"a.txt": b"one two three", "b.txt": b"four"})
    client = client_for()
    assert "word-count" in client.get("/durastore/task", HTTP_ACCEPT="application/json").json()
    listed = client.get("/api/v1/tasks/").json()["tasks"]
    assert {"name": "word-count", "description": "Count the words of text files."}.items() <= next(
        t for t in listed if t["name"] == "word-count"
    ).items()

    response = client.post("/api/v1/tasks/word-count/", {"paths": ["a.txt", "b.txt"]}, "json")
    assert response.status_code == 202
    job = run_all(Job.objects.get(uuid=response.json()["jobId"]))
    assert job.status == JobStatus.FINISHED
    assert dict(job.items.values_list("path", "result__words")) == {"a.txt": 3, "b.txt": 1}


def test_a_task_name_can_be_registered_once_only(word_count_task):
    with pytest.raises(ValueError, match="registered twice"):
        register(word_count_task)


def test_a_task_naming_an_unknown_store_kind_is_refused():
    with pytest.raises(ValueError, match="unknown store kinds"):
        register(
            TaskType(
                name="s3-only",
                description="x.",
                parameters=TaskParameters,
                create=lambda request: None,
                store_kinds=frozenset({"s3"}),
            )
        )
    assert task_type_get("s3-only") is None


def test_a_job_of_a_task_this_worker_does_not_know_fails_its_items_at_once(store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    job = job_create(
        owner=UserFactory(),
        store=store,
        task="from-a-newer-release",
        source="api",
        items=[Item(file=file, path=file.path, size=file.size)],
    )
    job = run_all(job)
    item = job.items.get()
    assert (job.status, item.status, item.attempts) == (JobStatus.FAILED, JobStatus.FAILED, 1)
    # Named by its store path, as every failed item is, so the job's error counts it by reason.
    assert item.error == "task 'from-a-newer-release' is not in this worker's catalogue: a.txt"


def test_a_noop_job_has_one_empty_subjob_and_finishes_when_it_runs(store):
    job = task_perform(
        owner=UserFactory(), store=store, task_name="noop", source="api", parameters=[1, 2]
    )
    assert (job.subjobs.count(), job.items.count()) == (1, 0)
    job = run_all(job)
    assert job.status == JobStatus.FINISHED
    assert job.subjobs.get().status == JobStatus.FINISHED


def test_dts_jobs_still_run_the_stage_work(client_for, store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = client_for().post("/dts/staging", {"ids": [file.id]}, format="json")
    job = run_all(Job.objects.get(uuid=response.json()["request_id"]))
    assert job.status == JobStatus.FINISHED
    assert (Path(store.staging_root) / "a.txt").read_bytes() == b"alpha"


def readme_example_module() -> str:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text()
    section = guide.split("## Adding a task type", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def readme_task():
    """docs/tasks.md's example task module, as staging/catalogue/types/line_count.py."""
    module = types.ModuleType("staging.catalogue.types.line_count")
    exec(compile(readme_example_module(), "docs/tasks.md", "exec"), module.__dict__)
    yield task_type_get("line-count")
    unregister("line-count")


def test_the_readme_example_task_is_listed_and_runs(client_for, store, archive_files, readme_task):
    archive_files({"a.txt": b"one\ntwo\n", "b.txt": b"no newline"})
    client = client_for()
    names = client.get("/durastore/task", HTTP_ACCEPT="application/json").json()
    assert "line-count" in names
    response = client.generic("POST", "/durastore/task/line-count", "a.txt\nb.txt")
    assert response.status_code == 200
    job = run_all(Job.objects.get(task="line-count"))
    assert job.status == JobStatus.FINISHED
    assert dict(job.items.values_list("path", "result__lines")) == {"a.txt": 2, "b.txt": 0}
    assert job.bytes_done == 18
