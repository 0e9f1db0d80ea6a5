"""maskdet.core.json_text: JSON from files and settings parsed with its nesting bounded."""

import json
import time

import pytest

from maskdet.core.json_text import MAX_JSON_DEPTH, JsonTooDeep, parse_json


def test_ordinary_documents_parse_as_json_loads_does():
    text = json.dumps({"labels": ["with_mask", "without_mask"], "nested": [[[{"a": "[[[{{{"}]]], "n": 1.5})
    assert parse_json(text) == json.loads(text) == parse_json(text.encode())


def test_brackets_inside_strings_do_not_count():
    assert parse_json(json.dumps("[" * 10_000)) == "[" * 10_000


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000,
                                  "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)])
def test_nesting_beyond_the_bound_is_malformed_json_with_a_reason(text):
    with pytest.raises(json.JSONDecodeError) as error:
        parse_json(text)
    assert isinstance(error.value, JsonTooDeep) and f"nested more than {MAX_JSON_DEPTH} levels deep" in str(error.value)


def test_nesting_at_the_bound_parses():
    depth = MAX_JSON_DEPTH
    assert parse_json("[" * depth + "]" * depth) is not None


def test_a_long_string_costs_little_to_check():
    """A backup row may be 64 MiB: its strings are skipped a run of characters at a time (19 s of CPU before)."""
    text = json.dumps({"config": "a" * 2**25, "escaped": '\\"[' * 1000})
    started = time.process_time()
    assert parse_json(text)["config"] == "a" * 2**25
    assert time.process_time() - started < 2
