"""Output JSON schema check: the whole response must parse and validate against the schema.

jsonschema is imported when a policy builds this guard, not with the module: importing it
compiles a URI grammar (rfc3987-syntax, on lark) that took 1.7 s and tens of MB in every router
start, whether or not any policy checks JSON.
"""

from __future__ import annotations

import json
from typing import Any

from guards.verdict import Finding


class JsonSchemaDetector:
    """Reports INVALID_JSON / SCHEMA_VIOLATION; only meaningful on a whole response."""

    # A stream's chunks are never valid JSON on their own: only the whole text is judged.
    judges_whole_text = True

    def __init__(self, schema: dict[str, Any]) -> None:
        import jsonschema  # type: ignore[import-untyped]

        jsonschema.Draft202012Validator.check_schema(schema)
        self.validator = jsonschema.Draft202012Validator(schema)

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        try:
            value = json.loads(text)
        except ValueError:
            return [Finding("INVALID_JSON", 0, len(text), 1.0)]
        if next(iter(self.validator.iter_errors(value)), None) is not None:
            return [Finding("SCHEMA_VIOLATION", 0, len(text), 1.0)]
        return []

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """All of it: whether the response is valid is known only at its end, and a client
        that asked for this schema must not receive a response that fails it."""
        return len(text)
