"""A path with control characters in it cannot forge or garble log lines: every configured
handler escapes them, in the plain and the JSON format."""

import io
import json
import logging
import logging.config

import pytest

from stagingsvc.logconfig import logging_config

NASTY = "run1/a\nERROR forged line\x1b[31m\r.txt"


def emit_through_config(fmt: str, message: str, *args, exc_info=False) -> str:
    """One warning through the console handler's formatter and filters as configured."""
    config = logging_config(fmt=fmt, level="INFO")
    configurator = logging.config.DictConfigurator(config)
    logger = logging.getLogger("stagingsvc.escape-probe")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configurator.configure_formatter(config["formatters"][fmt]))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(config["filters"][name]))
    logger.addHandler(handler)
    try:
        logger.warning(message, *args, exc_info=exc_info)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_plain_line_shows_control_characters_escaped_on_one_line():
    text = emit_through_config("plain", "copy of %s failed", NASTY)

    assert text.count("\n") == 1 and "\r" not in text and "\x1b" not in text
    assert text.rstrip("\n").endswith("copy of run1/a\\nERROR forged line\\x1b[31m\\r.txt failed")


def test_a_json_line_carries_the_escaped_path():
    text = emit_through_config("json", "copy of %(path)s failed", {"path": NASTY})

    assert text.count("\n") == 1
    message = json.loads(text)["message"]
    assert message == "copy of run1/a\\nERROR forged line\\x1b[31m\\r.txt failed"


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_tracebacks_keep_their_lines(fmt):
    try:
        raise ValueError("boom")
    except ValueError:
        text = emit_through_config(fmt, "failed on %s", "a.txt", exc_info=True)

    assert "ValueError: boom" in text
    assert "raise ValueError(" in text
