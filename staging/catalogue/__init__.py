"""The task catalogue: every task a store can perform, one module each in ``types``.

A module there builds a ``TaskType`` and calls ``register``; every one is imported here, so
adding a task is adding a module (docs/tasks.md shows one); nothing else needs to change.
``registry`` holds what a task type declares and the registry, ``parameters`` how parameters
are read (and the ones several tasks take), ``fields`` the serializer fields they share with
the API, ``result_table`` a job's results as its task declares them.
"""

from staging.catalogue.parameters import TaskParameters, text_as_json_or_paths
from staging.catalogue.registry import (
    ITEM_COLUMNS,
    TaskRequest,
    TaskType,
    UnsupportedTaskError,
    item_work_for,
    register,
    task_type_for,
    task_type_get,
    task_types,
    task_types_for,
    unregister,
)
from staging.catalogue.types import task_types_import

__all__ = [
    "ITEM_COLUMNS",
    "TaskParameters",
    "TaskRequest",
    "TaskType",
    "UnsupportedTaskError",
    "item_work_for",
    "register",
    "task_type_for",
    "task_type_get",
    "task_types",
    "task_types_for",
    "text_as_json_or_paths",
    "unregister",
]


task_types_import()
