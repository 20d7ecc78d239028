"""Output JSON schema check: the whole response must parse and validate against the schema.

The schema comes from a policy file, so it is treated as hostile input. It is compiled with
jsonschema-rs (Rust) rather than python-jsonschema, because of what the latter did with a
policy's schema (measured here, 2026-12-05):

- a `pattern` runs on Python's `re`, which backtracks and never releases the GIL while it
  matches: `"pattern": "(a+)+$"` on a 29-character answer held the router's whole event loop
  for about 15 s (40 characters: hours). jsonschema-rs matches with Rust's linear-time `regex`
  and falls back to backtracking (`fancy-regex`) only for look-around and back-references,
  there under BACKTRACK_LIMIT steps: the same hostile pattern on 100 KB takes ~2 ms.
- a `$ref` that points nowhere ("#/$defs/missing") passed the load and failed every response
  at run time (then `on_error: open` let them through); here every reference is resolved when
  the policy loads, and one that does not resolve refuses the policy.
- it fetched remote `$ref`s over HTTP and opened `file://` ones while validating. Params
  already refuse non-local references (guards.registry); here, in addition, the validator
  has a retriever that refuses every URI and `$schema` must name Draft 2020-12, so no schema
  can make the router fetch one.

A pattern that is not a valid regular expression is refused at load too (it used to fail each
response). `format` is not asserted (annotation only, as Draft 2020-12 says by default).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from guards.verdict import Finding

# fancy-regex's steps per match before it gives up (the match then counts as failed, so the
# response fails the schema: closed, never a stall). Its default is 1,000,000: ~22 ms per 100 KB
# on a back-reference bomb here; 10,000 keeps it under 2 ms and is far above what a real
# pattern needs on a JSON string value.
BACKTRACK_LIMIT = 10_000
# Compiled-pattern and DFA-cache bounds (bytes): a pattern such as "a{1000}{1000}" is refused
# at load instead of building a huge automaton.
PATTERN_SIZE_LIMIT = 1 << 20
# The one dialect this guard speaks. Another `$schema` URI is refused before anything reads the
# schema: jsonschema-rs's meta-schema check fetches an unknown one over HTTP (seen here: a
# request to the policy's 127.0.0.1:9 URI, made from Rust, so no Python audit hook saw it).
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class SchemaRefused(ValueError):
    """The policy's schema cannot be used: invalid, an unresolvable reference, a bad pattern."""


def _no_retrieval(uri: str) -> NoReturn:
    raise SchemaRefused(f"reference {uri[:100]!r} is not in the schema; nothing is fetched")


def compile_schema(schema: dict[str, Any]) -> Any:
    """The validator for a policy's schema, every reference resolved now; SchemaRefused if the
    schema is not a valid Draft 2020-12 schema, or a reference or pattern cannot be used."""
    import jsonschema_rs

    dialect = schema.get("$schema", DIALECT)
    if not isinstance(dialect, str) or dialect.rstrip("#") != DIALECT:
        raise SchemaRefused(f"$schema must be {DIALECT!r} (Draft 2020-12) or left out")
    try:
        jsonschema_rs.meta.validate(schema)
        return jsonschema_rs.Draft202012Validator(
            schema,
            validate_formats=False,
            retriever=_no_retrieval,  # in place of the default one, which fetches http(s)
            pattern_options=jsonschema_rs.FancyRegexOptions(
                backtrack_limit=BACKTRACK_LIMIT,
                size_limit=PATTERN_SIZE_LIMIT,
                dfa_size_limit=PATTERN_SIZE_LIMIT,
            ),
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaRefused(f"unusable JSON schema: {first[:300]}") from None


class JsonSchemaDetector:
    """Reports INVALID_JSON / SCHEMA_VIOLATION; only meaningful on a whole response."""

    # A stream's chunks are never valid JSON on their own: only the whole text is judged.
    judges_whole_text = True

    def __init__(self, schema: dict[str, Any]) -> None:
        self.validator = compile_schema(schema)

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[...": deeper than Python
            return [Finding("INVALID_JSON", 0, len(text), 1.0)]
        if not self.validator.is_valid(value):
            return [Finding("SCHEMA_VIOLATION", 0, len(text), 1.0)]
        return []

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """All of it: whether the response is valid is known only at its end, and a client
        that asked for this schema must not receive a response that fails it."""
        return len(text)
