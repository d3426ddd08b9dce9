"""The task types, one module each: every module here builds a ``TaskType`` and registers it
when ``staging.catalogue`` imports this package, so adding a task is adding a module."""

import importlib
import pkgutil


def task_types_import() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
