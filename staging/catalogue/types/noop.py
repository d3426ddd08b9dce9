"""noop: a client's connectivity test (DuraCloud's "Test task"). Its body is ignored; its job
has no items, so it succeeds as soon as a worker has taken it, which proves the whole path:
API, database, broker and a worker."""

from staging.catalogue.parameters import TaskParameters
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.services.jobs import job_create


class NoopParameters(TaskParameters):
    """Anything at all; it is ignored."""

    def to_internal_value(self, data):
        return {}


def create(request: TaskRequest):
    return job_create(
        owner=request.owner,
        store=request.store,
        task="noop",
        source=request.source,
        items=[],
    )


def ignore_body(raw: str) -> dict:
    return {}


register(
    TaskType(
        name="noop",
        description="Test task: ignores its parameters and succeeds once a worker has run it.",
        parameters=NoopParameters,
        create=create,
        text_body=ignore_body,
        response_text=lambda job: "Success",
        result_columns=(),
    )
)
