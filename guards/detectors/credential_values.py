"""Named secrets whose value or name the named form (credentials.py) does not read:

- a key given as a byte array (zigbee2mqtt's `network_key: [61, 7, 198, ...]`, a Rust or C
  `const SECRET_KEY: [u8; 32] = [0x1f, ...]`): sixteen bytes or more under a name ending in
  key, secret, token, seed or salt that no word makes public or an identifier (`public_key`,
  `key_id`, `pan_id`), and not one byte repeated (`[221, 221, ...]`, a pad or a placeholder);
- a random key under a name ending in `_AUTH` (`TWILIO_AUTH = "2a02..."`, an auth token by
  its vendor's short name): "auth" alone names a setting too (`auth: true`, `BASIC_AUTH=on`),
  so only a value that looks like a random key counts.

Each finding is the value (the whole array). Streams: `open_value_start` holds an array from
its name while its bracket is open (its bytes are separated by blanks and commas, so the
trailing token run would release them one by one).
"""

from __future__ import annotations

import re

from guards.detectors.credentials import is_placeholder, key_like
from guards.verdict import Finding

_BYTE = r"(?:0x[0-9a-fA-F]{1,2}|\d{1,3})"
_ARRAY_NAME = r"(?P<name>[A-Za-z_][\w-]{0,60}?(?i:key|secret|token|seed|salt))"
_TYPE = r"(?::[ \t]*(?:&(?:'static[ \t]+)?)?\[[ \t]*u8[ \t]*;[ \t]*\d{1,4}[ \t]*\])?"  # Rust's
BYTE_ARRAY = re.compile(
    rf"{_ARRAY_NAME}[\"']?[ \t]*{_TYPE}[ \t]*(?:=|:)[ \t]*(?:&)?"
    rf"(?P<value>[\[{{][ \t]*(?:{_BYTE}[ \t]*,[ \t]*){{15,127}}{_BYTE}[ \t]*,?[ \t]*[\]}}])"
)
OPEN_BYTE_ARRAY = re.compile(
    rf"(?i:key|secret|token|seed|salt)[\"']?[ \t]*{_TYPE}[ \t]*(?:=|:)[ \t]*&?[\[{{]"
    r"[0-9a-fA-Fx, \t]{0,1000}\Z"
)
_NOT_SECRET_PARTS = frozenset(("public", "pub", "id", "hash", "digest", "fingerprint", "verify",
                               "verifying", "primary", "sort", "cache", "partition"))  # fmt: skip
_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")
_BYTE_VALUE = re.compile(_BYTE)

AUTH_NAME = re.compile(
    r"\b(?P<name>[A-Za-z][A-Za-z0-9]{1,30}_(?i:auth))[\"']?[ \t]*(?::=|=|:)[ \t]*"
    r"(?P<quote>[\"']?)(?P<value>[A-Za-z0-9_.+/=-]{16,200})(?P=quote)"
)


def find_values(text: str, low: str) -> list[Finding]:
    """Byte-array keys and `_AUTH` keys (`low` is `text.lower()`)."""
    found: list[Finding] = []
    if ("[" in text or "{" in text) and "," in text:
        for m in BYTE_ARRAY.finditer(text):
            parts = {p.lower() for p in _PARTS.findall(m.group("name"))}
            values = _BYTE_VALUE.findall(m.group("value"))
            if parts.isdisjoint(_NOT_SECRET_PARTS) and len(set(values)) > 1:
                found.append(Finding("CREDENTIAL", *m.span("value")))
    if "_auth" in low:
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in AUTH_NAME.finditer(text)
            if key_like(m.group("value")) and not is_placeholder(m.group("value"))
        )
    return found


_OPEN_REACH = 1200  # a name and 128 bytes written "0xff, "


def open_value_start(text: str) -> int | None:
    """Where a byte array that may still be growing at the end of `text` begins."""
    at = max(len(text) - _OPEN_REACH, 0)
    if "[" not in text[at:] and "{" not in text[at:]:
        return None
    m = OPEN_BYTE_ARRAY.search(text, at)
    return None if m is None else m.start()
