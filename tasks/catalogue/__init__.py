"""The task catalogue: every task a store can perform, one module each.

A module of this package that does not start with ``_`` is a task: it builds a ``TaskType`` and
calls ``register``. Every such module is imported here, so adding a task is adding a module
(docs/tasks.md shows one); nothing else needs to change. ``_base`` holds the registry and what
every task shares, ``_params`` the parameters several tasks take.
"""

import importlib
import pkgutil

from tasks.catalogue._base import (
    ITEM_COLUMNS,
    TaskParameters,
    TaskRequest,
    TaskType,
    UnsupportedTaskError,
    item_work_for,
    parameters_schema,
    register,
    task_type_for,
    task_type_get,
    task_types,
    task_types_for,
    text_as_json_or_paths,
    unregister,
)

__all__ = [
    "ITEM_COLUMNS",
    "TaskParameters",
    "TaskRequest",
    "TaskType",
    "UnsupportedTaskError",
    "item_work_for",
    "parameters_schema",
    "register",
    "task_type_for",
    "task_type_get",
    "task_types",
    "task_types_for",
    "text_as_json_or_paths",
    "unregister",
]


def _import_task_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_task_modules()
