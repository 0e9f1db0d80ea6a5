"""JSON read from files and settings a user or an attacker may have written: parsed with a bound on nesting, so that
a deeply nested document fails like any other malformed one instead of exhausting Python's recursion."""

import json
import re

MAX_JSON_DEPTH = 64  # maskdet's own files nest at most 6 deep
# Strings (skipped whole, a run of plain characters at a time: 0.2 s for 64 MiB, not 19 s) and brackets.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class JsonTooDeep(json.JSONDecodeError):
    """A JSON document nested deeper than MAX_JSON_DEPTH: malformed JSON to every caller."""


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH):
    """json.loads, refusing (JsonTooDeep, a JSONDecodeError) a document nested deeper than max_depth before parsing
    it."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonTooDeep(f"nested more than {max_depth} levels deep", text, match.start())
        elif token in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen within max_depth; kept so that no input reaches the caller as one
        raise JsonTooDeep("nested too deeply", text, 0) from None
