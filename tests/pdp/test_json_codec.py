"""servicekit/json_codec.py: orjson for speed, the json module's verdict where orjson refuses."""

import json

import pytest

from servicekit import json_codec


def test_dumps_is_compact_utf8_from_orjson():
    # The json module would write \u00e9 and ", " separators: this is orjson's output.
    assert json_codec.dumps({"é": ["a", 1, True, None]}) == '{"é":["a",1,true,null]}'.encode()


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"h": "\udcff"}, b'{"h":"\\udcff"}'),  # a header byte kept by surrogateescape
        ({"n": 2**70}, b'{"n":1180591620717411303424}'),  # past 64 bits
        ({1: "a"}, b'{"1":"a"}'),  # a non-string key
    ],
)
def test_dumps_falls_back_to_the_json_module_escaped(doc, expected):
    assert json_codec.dumps(doc) == expected
    assert json.loads(expected) == json.loads(json.dumps(doc))


def test_loads_reads_lone_surrogate_escapes_for_validation_to_refuse():
    assert json_codec.loads(b'{"a":"\\ud800","b":1.5}') == {"a": "\ud800", "b": 1.5}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e999}',
        b'{"a":1e999,"b":"\\ud800"}',
        b"nope",
        b"\xff",
    ],
)
def test_loads_refuses_what_is_not_json(raw):
    with pytest.raises(ValueError):
        json_codec.loads(raw)


def test_loads_takes_str_and_bytes():
    assert json_codec.loads('{"a":[1,2]}') == json_codec.loads(b'{"a":[1,2]}') == {"a": [1, 2]}
