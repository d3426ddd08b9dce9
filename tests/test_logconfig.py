"""The log configuration: the task context on each line, in plain and JSON formats."""

import io
import json
import logging
import logging.config

import pytest

from stagingsvc.logconfig import ContextFilter, log_context, logging_config


def emit(fmt: str, **context) -> str:
    """One warning through the configured formatter and filter, inside ``context`` if given."""
    config = logging_config(fmt=fmt, level="INFO")
    logger = logging.getLogger("stagingsvc.logconfig-probe")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.config.DictConfigurator(config).configure_formatter(config["formatters"][fmt])
    )
    handler.addFilter(ContextFilter())
    logger.addHandler(handler)
    try:
        if context:
            with log_context(**context):
                logger.warning("copy of %s failed", "a.txt")
        else:
            logger.warning("copy of %s failed", "a.txt")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().strip()


def test_plain_lines_name_the_job_and_subjob_in_brackets():
    line = emit("plain", job_id="4b86e181", subjob_id=7, worker_host="node1")
    assert line.endswith(
        "stagingsvc.logconfig-probe [job_id=4b86e181 subjob_id=7 worker_host=node1] "
        "copy of a.txt failed"
    )


def test_json_lines_carry_the_context_as_fields():
    record = json.loads(emit("json", job_id="4b86e181", subjob_id=7, worker_host="node1"))
    assert record["message"] == "copy of a.txt failed"
    assert (record["job_id"], record["subjob_id"], record["worker_host"]) == (
        "4b86e181",
        "7",
        "node1",
    )
    assert record["level"] == "WARNING" and "context" not in record


def test_lines_outside_a_task_have_no_context():
    assert "job_id" not in json.loads(emit("json"))
    assert "[" not in emit("plain")


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(fmt="xml", level="INFO")
