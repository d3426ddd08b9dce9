"""JSON request bodies, refused with a 400 (not a 500) however deeply they nest or whatever
characters their strings hold."""

import json
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def nul_character_at(document) -> str | None:
    """Where the first NUL character sits in a parsed JSON document (``files[0].path``), or
    None. PostgreSQL stores no NUL in text or jsonb, and no path or id of ours holds one."""
    pending = [("", document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return where or "the body"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if "\x00" in key:
                    return name
                pending.append((name, item))
        elif isinstance(value, list):
            # Strings checked here, not queued: a JSON array of a million ids stays one list.
            for n, item in enumerate(value):
                if isinstance(item, str):
                    if "\x00" in item:
                        return f"{where}[{n}]"
                else:
                    pending.append((f"{where}[{n}]", item))
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus two refusals. Python's decoder recurses once per nesting level,
    so a body such as 100,000 ``[`` exhausts the stack: that is malformed input, not a server
    fault. A NUL character would fail only when the database stores it."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(
                "JSON parse error - the body nests arrays or objects too deeply; "
                "send a flat document as the API describes."
            ) from exc
        where = nul_character_at(data)
        if where is not None:
            raise ParseError(
                f"JSON parse error - {where} contains a NUL character (\\u0000); remove it."
            )
        return data


NDJSON = "application/x-ndjson"
# Longer than any id or path a request may hold (1,024 characters, up to 4 bytes each, quoted
# and escaped): a longer line is refused before it is decoded.
NDJSON_LINE_MAX_BYTES = 8192


class NDJSONParser(parsers.BaseParser):
    """A body of one JSON value a line (NDJSON), read as it arrives: ``request.data`` is an
    iterator of ``(where, value)``, ``where`` naming the line (``line 3``) for error messages.
    Blank lines are skipped. The body is never held whole, so its size is bounded by the
    number of values the view accepts, not by ``MAX_REQUEST_BODY_BYTES``."""

    media_type = NDJSON

    def parse(self, stream, media_type=None, parser_context=None):
        return ndjson_values(stream) if stream is not None else iter(())


# A JSON string without escapes or control characters: its value is the bytes between the
# quotes, so the line needs no JSON decoder (the usual line, an id or a path, a million times).
PLAIN_JSON_STRING = re.compile(rb'"[^"\\\x00-\x1f]*"')
# Lines that are all such strings, none longer than the limit (quotes and newline included):
# a block of them is split in one go rather than read and matched line by line.
PLAIN_JSON_LINES = re.compile(rb'(?:"[^"\\\x00-\x1f]{0,%d}"\n)+' % (NDJSON_LINE_MAX_BYTES - 3))
NDJSON_BLOCK_BYTES = 1 << 16


def ndjson_values(stream):
    number = 0  # lines read so far
    pending = b""  # the start of a line whose end is in the next block
    while block := stream.read(NDJSON_BLOCK_BYTES):
        data = pending + block
        end = data.rfind(b"\n") + 1
        lines, pending = data[:end], data[end:]
        if lines:
            values = _plain_lines(lines)
            if values is None:
                yield from _lines_values(lines.split(b"\n")[:-1], number)
                number += lines.count(b"\n")
            else:
                yield from ((f"line {n}", v) for n, v in enumerate(values, number + 1))
                number += len(values)
        if len(pending) > NDJSON_LINE_MAX_BYTES:
            raise ParseError(f"line {number + 1} is longer than {NDJSON_LINE_MAX_BYTES} bytes")
    if pending:  # the last line, without a newline
        yield from _lines_values([pending], number, newline=False)


def _plain_lines(lines: bytes) -> list[str] | None:
    """The values of ``lines`` (whole lines) if every one is a plain JSON string (see
    ``PLAIN_JSON_LINES``), else None."""
    if not PLAIN_JSON_LINES.fullmatch(lines):
        return None
    try:
        return lines[1:-2].decode().split('"\n"')
    except UnicodeDecodeError:
        return None  # the line-by-line reading names the line


def _lines_values(lines: list[bytes], number: int, *, newline: bool = True):
    """(where, value) of each of ``lines`` (without their newline, which each had if
    ``newline``), the first being line ``number + 1``; blank lines are skipped."""
    for number, line in enumerate(lines, number + 1):  # noqa: B020 (the count goes on)
        if len(line) + newline > NDJSON_LINE_MAX_BYTES:
            raise ParseError(f"line {number} is longer than {NDJSON_LINE_MAX_BYTES} bytes")
        text = line.strip()
        if not text:
            continue
        try:
            plain = PLAIN_JSON_STRING.fullmatch(text)
            value = text[1:-1].decode() if plain else json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"line {number} is not a JSON value: {exc}") from exc
        yield f"line {number}", value


def body_drained(request) -> None:
    """Read what is left of a refused streamed body, so that a client still sending it reads
    the answer rather than a reset connection."""
    while request._request.read(1 << 16):
        pass
