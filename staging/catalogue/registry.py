"""What a task type declares and the registry that holds them.

A task type is one module of ``staging.catalogue.types`` that builds a ``TaskType`` and
passes it to ``register``; the package imports every module in it, so a new module is a new
task. The engine
(jobs, sub-jobs, items, leases, retries, cancel) is the same for every task: a task says how its
parameters are read, how its job is made (its items), what a worker does per item, and the
columns of its results.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from staging.catalogue.parameters import TaskParameters, text_as_json_or_paths
from staging.errors import ServiceError, validation_detail, validation_errors
from staging.models import Job, Store, StoreKind
from staging.selectors import RESULT_COLUMNS
from staging.services.execution import ItemFailed, ItemWork

ALL_STORE_KINDS = frozenset(StoreKind.values)

# Result columns of tasks whose rows are their items (one per file), as the job APIs show items.
ITEM_COLUMNS = RESULT_COLUMNS


class UnsupportedTaskError(ServiceError):
    """A task the catalogue does not have, or that the store's kind does not support."""

    def __init__(self, name: str):
        # DuraCloud's wording, which its clients may match on.
        super().__init__(f"{name} is not a supported task.", field="taskName")
        self.task_name = name


@dataclass(frozen=True)
class TaskRequest:
    """A validated request to perform a task: what ``TaskType.create`` receives."""

    owner: Any
    store: Store
    parameters: dict
    source: str


def _default_text(job: Job) -> str:
    return f"Task {job.task} accepted as job {job.uuid}."


@dataclass(frozen=True)
class TaskType:
    """One task of the catalogue.

    - ``parameters``: a ``TaskParameters`` serializer; its fields are the parameter schema our
      API lists, and its validation (which may consult ``context["store"]``) says what is wrong.
    - ``text_body``: turns a DuraStore request body (raw text) into the same parameters.
    - ``create``: makes the job (items, pins) from validated parameters, inside the
      transaction of the request (sub-jobs are published once it commits).
    - ``work``: what a worker does for one item (``None``: the task's jobs have no items).
    - ``result_columns``: the columns of its result rows; values come from the item's fields or
      its ``result`` JSON, or, when ``results_in_file``, from the results file its work wrote
      (``staging.result_files.ResultsWriter``, then ``job_result_file_set``).
    """

    name: str
    description: str
    parameters: type[TaskParameters]
    create: Callable[[TaskRequest], Job]
    store_kinds: frozenset[str] = ALL_STORE_KINDS
    work: ItemWork | None = None
    text_body: Callable[[str], dict] = text_as_json_or_paths
    response_text: Callable[[Job], str] = _default_text
    result_columns: tuple[str, ...] = ITEM_COLUMNS
    results_in_file: bool = False
    # The job's one item's result is its summary (a scan's counts), shown beside the job's.
    summary_from_item: bool = False
    # Extra columns for jobs that asked for them (stage with verify), after result_columns.
    extra_columns: Callable[[Job], tuple[str, ...]] = lambda job: ()

    def columns_for(self, job: Job) -> tuple[str, ...]:
        """The columns of ``job``'s result rows."""
        return tuple(self.result_columns) + tuple(self.extra_columns(job))

    def supports(self, store: Store) -> bool:
        return store.kind in self.store_kinds

    def parse(self, body, *, store: Store, owner=None) -> dict:
        """Validated parameters from a JSON body; ServiceError says what is wrong."""
        serializer = self.parameters(
            data=body if body is not None else {}, context={"store": store, "owner": owner}
        )
        if not serializer.is_valid():
            pairs = validation_errors(serializer.errors)
            raise ServiceError(
                validation_detail(pairs),
                field=pairs[0][0] or None,
                extra={"errors": [{"field": n, "message": m} for n, m in pairs]},
            )
        return dict(serializer.validated_data)

    def parse_text(self, raw: str, *, store: Store, owner=None) -> dict:
        return self.parse(self.text_body(raw), store=store, owner=owner)


_REGISTRY: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Add a task type to the catalogue; a second task of the same name is a mistake."""
    if task_type.name in _REGISTRY:
        raise ValueError(f"task {task_type.name!r} is registered twice")
    unknown = set(task_type.store_kinds) - ALL_STORE_KINDS
    if unknown:
        raise ValueError(f"task {task_type.name!r} names unknown store kinds {sorted(unknown)}")
    _REGISTRY[task_type.name] = task_type
    return task_type


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def task_type_get(name: str) -> TaskType | None:
    return _REGISTRY.get(name)


def task_types() -> list[TaskType]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def task_types_for(store: Store) -> list[TaskType]:
    """The tasks ``store`` supports, by name."""
    return [task for task in task_types() if task.supports(store)]


def task_type_for(name: str, store: Store) -> TaskType:
    task = _REGISTRY.get(name)
    if task is None or not task.supports(store):
        raise UnsupportedTaskError(name)
    return task


def item_work_for(job: Job) -> ItemWork:
    """What a worker does for each item of ``job``. A job whose task this worker does not know
    (an older or newer release) fails its items with that reason instead of guessing."""
    task = _REGISTRY.get(job.task)
    if task is not None and task.work is not None:
        return task.work
    reason = (
        f"task {job.task!r} is not in this worker's catalogue"
        if task is None
        else f"task {job.task!r} has no per-item work"
    )

    def refuse(item, store, reporter) -> None:
        raise ItemFailed(reason)

    return refuse
