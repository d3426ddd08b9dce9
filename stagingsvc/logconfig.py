"""Logging for every process: plain lines on a laptop, one JSON object per line in production
(``LOG_FORMAT=json``), and on every line written while a task runs, the job, the sub-job and
the worker host it runs for (set by ``tasks.instrumentation`` around each task).

The context lives in a contextvar, so a line logged by any library during a task carries it
without that library knowing about jobs."""

import contextvars
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.core import RESERVED_ATTRS

# Field names as they appear in JSON lines (and in the plain format's bracket).
CONTEXT_FIELDS = ("job_id", "subjob_id", "task_id", "task_name", "worker_host")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "stagingsvc_log_context", default=None
)


def log_context_set(**fields: object) -> contextvars.Token:
    """Attach ``fields`` (those of CONTEXT_FIELDS that are not None) to every following line of
    this thread or task; returns a token for ``log_context_reset``."""
    values = {k: str(v) for k, v in fields.items() if k in CONTEXT_FIELDS and v is not None}
    return _context.set(values)


def log_context_reset(token: contextvars.Token) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    token = log_context_set(**fields)
    try:
        yield
    finally:
        log_context_reset(token)


def worker_host() -> str:
    return socket.gethostname()


class ContextFilter(logging.Filter):
    """Copies the current task context onto each record: as attributes for the JSON formatter,
    and as ``record.context`` (" [job_id=… subjob_id=…]" or "") for the plain format."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if name in values and not hasattr(record, name):
                setattr(record, name, values[name])
        pairs = " ".join(f"{k}={v}" for k, v in values.items())
        record.context = f" [{pairs}]" if pairs else ""
        return True


# C0 controls, DEL and C1 controls (\x85 is a line break to some viewers), and the Unicode line
# and paragraph separators: shown as escapes, so a file name cannot start a forged log line or
# send terminal escape sequences to whoever reads the log.
_CONTROL_ESCAPES = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code), f"\\x{code:02x}")
    for code in [*range(0x20), *range(0x7F, 0xA0)]
}
_CONTROL_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    return text.translate(_CONTROL_ESCAPES)


def _escaped(value):
    return escape_controls(value) if isinstance(value, str) else value


class ControlCharacterFilter(logging.Filter):
    """Escapes control characters in the values a line is formatted with (paths, ids, names
    from clients), whatever the format; the message template and tracebacks are left whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            record.args = {key: _escaped(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_escaped(value) for value in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = escape_controls(record.msg)
        return True


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


def logging_config(*, fmt: str, level: str) -> dict:
    """The LOGGING dict for Django (and, through the setup_logging signal, Celery)."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"LOG_FORMAT must be 'plain' or 'json', not {fmt!r}")
    formatters = {
        "plain": {"format": PLAIN_FORMAT},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # The plain format's helper field says nothing JSON does not already carry.
            "reserved_attrs": [*RESERVED_ATTRS, "context"],
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "stagingsvc.logconfig.ContextFilter"},
            "escape": {"()": "stagingsvc.logconfig.ControlCharacterFilter"},
        },
        "formatters": formatters,
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["context", "escape"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
