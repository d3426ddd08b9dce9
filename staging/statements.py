"""Read statements the ORM compiles once per process and then runs with new arguments.

Building and compiling a queryset costs a status poll more CPU than PostgreSQL spends answering
it (a lookup by an indexed UUID). ``StatementCache.rows`` builds the queryset once per key with
placeholder arguments, keeps its compiled SQL, and on every later call runs that SQL with the
call's arguments put where the placeholders were, converting the rows as the ORM does
(``.values()`` dictionaries, each column through the backend's converters).

The key must name everything besides the arguments that shapes the SQL (e.g. the caller's job
scope); an argument must reach the SQL only as a parameter, and must not change the SQL's shape
by its value. A placeholder that does not turn up in the parameters is refused (ValueError)
rather than guessed, so a queryset that writes an argument into the SQL fails loudly in tests.
Arguments are UUIDs or integers (placeholders no caller passes: a fresh UUID, a negative id)."""

import threading
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from django.db import connections
from django.db.models import QuerySet


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    # (position in params, argument name, the form the parameter takes) of each placeholder.
    slots: tuple[tuple[int, str, Callable], ...]
    compiler: object
    names: tuple[str, ...]


class Placeholder:
    """Stands for an argument while a statement is compiled: a value no caller passes. A
    backend may pass an argument on in another form (SQLite: a UUID as its hex string), so each
    form is known with how to make it from the real argument."""

    @staticmethod
    def for_value(value) -> tuple[object, dict]:
        """(placeholder, {form of it in the parameters: how to make that form of a value})."""
        if isinstance(value, uuid.UUID):
            placeholder = uuid.uuid4()
            return placeholder, {placeholder: _same, placeholder.hex: _hex}
        if isinstance(value, int) and not isinstance(value, bool):
            # Primary keys are positive: a random negative number is no one's.
            placeholder = -(uuid.uuid4().int % 2**62) - 1
            return placeholder, {placeholder: _same}
        raise ValueError(f"no placeholder for a {type(value).__name__}")


def _same(value):
    return value


def _hex(value: uuid.UUID) -> str:
    return value.hex


class StatementCache:
    def __init__(self):
        self._compiled: dict[Hashable, _Compiled] = {}
        self._lock = threading.Lock()

    def rows(
        self, key: Hashable, build: Callable[..., QuerySet], *, using: str = "default", **args
    ) -> list[dict]:
        """The rows of ``build(**args)`` (a ``.values()`` queryset) as dictionaries."""
        connection = connections[using]
        full_key = (using, connection.vendor, key, tuple(sorted(args)))
        compiled = self._compiled.get(full_key)
        if compiled is None:
            compiled = self._compile(build, using, args)
            with self._lock:
                self._compiled[full_key] = compiled
        params = list(compiled.params)
        for position, name, form in compiled.slots:
            params[position] = form(args[name])
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            raw = cursor.fetchall()
        converted = compiled.compiler.results_iter(results=[raw])
        return [dict(zip(compiled.names, row, strict=True)) for row in converted]

    @staticmethod
    def _compile(build: Callable[..., QuerySet], using: str, args: dict) -> _Compiled:
        placeholders, forms = {}, {}
        for name, value in args.items():
            placeholders[name], forms[name] = Placeholder.for_value(value)
        query = build(**placeholders).query
        compiler = query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = []
        for name in placeholders:
            found = [
                (position, name, forms[name][param])
                for position, param in enumerate(params)
                if _hashable(param) and param in forms[name]
            ]
            if not found:
                raise ValueError(f"{name} is not a parameter of the compiled statement")
            slots += found
        if query.selected:
            names = tuple(query.selected)
        else:
            names = (*query.extra_select, *query.values_select, *query.annotation_select)
        return _Compiled(sql, tuple(params), tuple(slots), compiler, names)

    def clear(self) -> None:
        with self._lock:
            self._compiled.clear()


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


statements = StatementCache()
