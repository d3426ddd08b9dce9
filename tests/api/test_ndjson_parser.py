"""The NDJSON body reader: lines of plain strings are split a block at a time, any other line
is decoded on its own, and either way every value comes with its line and a line over the
limit is refused naming it, wherever the blocks happen to cut the body."""

import io
import json

import pytest
from rest_framework.exceptions import ParseError

from staging.api import parsers
from staging.api.parsers import NDJSON_LINE_MAX_BYTES, ndjson_values


def read(body: bytes) -> list[tuple[str, object]]:
    return list(ndjson_values(io.BytesIO(body)))


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 16])
def test_values_and_their_lines_do_not_depend_on_where_blocks_cut(monkeypatch, block):
    monkeypatch.setattr(parsers, "NDJSON_BLOCK_BYTES", block)
    body = (
        b'"a"\n"b\\u0063"\n\n  "d"  \r\n{"path": "/e"}\n"f\xc3\xa9"\n"g"\n"h"'  # no final newline
    )

    assert read(body) == [
        ("line 1", "a"),
        ("line 2", "bc"),
        ("line 4", "d"),
        ("line 5", {"path": "/e"}),
        ("line 6", "f\u00e9"),
        ("line 7", "g"),
        ("line 8", "h"),
    ]


@pytest.mark.parametrize("block", [5, 1 << 16])
@pytest.mark.parametrize("plain", [True, False])
def test_a_line_at_the_limit_is_read_and_one_byte_more_is_refused_naming_it(
    monkeypatch, block, plain
):
    monkeypatch.setattr(parsers, "NDJSON_BLOCK_BYTES", block)
    value = "x" * (NDJSON_LINE_MAX_BYTES - 3)  # quotes and newline make the limit
    line = json.dumps(value).encode() + b"\n" if plain else json.dumps([value[:-4]]).encode()
    if not plain:
        line = line + b" " * (NDJSON_LINE_MAX_BYTES - 1 - len(line)) + b"\n"
    assert len(line) == NDJSON_LINE_MAX_BYTES

    assert len(read(b'"a"\n' + line)) == 2
    with pytest.raises(ParseError, match="line 2 is longer than"):
        read(b'"a"\n' + line[:-1] + b" \n" + b'"b"\n')
    with pytest.raises(ParseError, match="line 2 is longer than"):
        read(b'"a"\n' + line[:-1] + b"  ")  # the last line, without a newline


def test_a_line_that_is_no_json_or_no_utf8_is_refused_naming_it():
    with pytest.raises(ParseError, match="line 3 is not a JSON value"):
        read(b'"a"\n"b"\n"\xff"\n"d"\n')
    with pytest.raises(ParseError, match="line 2 is not a JSON value"):
        read(b'"a"\nnope\n')
