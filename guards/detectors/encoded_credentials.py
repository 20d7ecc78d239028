"""Credentials written in base64, as tools write them: a Kubernetes Secret's `data:` values (a
`.dockerconfigjson`, a database URL), an SMTP `AUTH PLAIN` line, an `Authorization: Basic`
header, a `.dockerconfigjson`'s own `"auth"` field.

Nothing readable says such a run holds a secret: the `kind: Secret` line may be far above it,
beyond what a stream's check reads, and the name beside it (`.dockerconfigjson`, `DB_URL`) is
no credential word. So each run is decoded and judged by what it says: the caller looks for
secrets in the decoded text (`SecretsDetector` runs its own patterns on it, a level deep), and
`login_kind` reads the encodings of a bare login: SASL PLAIN's `authzid NUL user NUL password`,
`user:password` where the run is a Basic credential or an `auth` field, and the line that
answers SMTP AUTH LOGIN's base64 "Password:" prompt. The whole run is the finding: masking part
of it would leave the rest decodable.

Decoding is judged on the run alone (and the few characters before it),
and a run is a stream's trailing token until it ends (`secrets.TOKEN_CHARS` holds every base64
character), so a stream masks it exactly as the whole text does.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

# A run of standard base64 long enough to hold a login (12 bytes), not part of a longer token
# (url-safe base64 is a JWT's, which `secrets.JWT` finds).
MIN_RUN = 16
ENCODED_RUN = re.compile(
    rf"(?<![A-Za-z0-9+/=_.-])[A-Za-z0-9+/]{{{MIN_RUN},}}={{0,2}}(?![A-Za-z0-9+/=_-])"
)
# Beyond this many runs in one text the rest are not decoded: a hostile text of many short runs
# would otherwise cost a decode each (measured: ~3 µs a run of 100 characters).
MAX_RUNS = 64
MAX_RUN_CHARS = 16_384
# A cheap first test: UTF-8 bytes mapped to "a" (a base64 character) or " " (any other byte);
# a text holds a run only if the mapped bytes hold MIN_RUN "a"s in a row (~2 µs a KB).
_RUN_BYTES = bytes(
    0x61 if chr(b) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" else 0x20
    for b in range(256)
)
_RUN_NEEDLE = b"a" * MIN_RUN
_SASL_PART = re.compile(r"\S{1,256}")
# an Azure DevOps personal access token is sent with no user (":<token>")
_LOGIN = re.compile(r"(?P<user>[^\s:]{0,256}):(?P<password>\S{1,256})")
# SMTP AUTH LOGIN: the server asks "Password:" in base64, the client's next line answers
_PASSWORD_PROMPT = "UGFzc3dvcmQ6"  # noqa: S105 (a prompt, not a password)
# `Authorization: Basic <run>`, `"auth": "<run>"` (a docker config), `auth: <run>`.
_BASIC_BEFORE = re.compile(r"(?i:\bbasic[ \t]+|\bauth[\"']?[ \t]*[:=][ \t]*[\"']?)\Z")
_CONTEXT = 16
# After `Basic` a shorter run is still a login: `bob:Zx81!qq` encodes to 16 characters with its
# "=", under MIN_RUN's 16 before it (logins of 6-11 bytes were never read).
SHORT_BASIC = re.compile(
    r"(?i:\bbasic)[ \t]+(?P<run>[A-Za-z0-9+/]{8,15}={0,2})(?![A-Za-z0-9+/=_-]|\.\w)"
)


def decoded_runs(text: str) -> Iterator[tuple[int, int, str]]:
    """Each base64 run of `text` that decodes to readable UTF-8: its span and its text.

    The pattern is run only over the long words of a text that holds a long run: over the
    whole text it cost ~30 µs a KB of prose that has none, splitting the words ~13 µs, the
    byte test ~2 µs (measured here)."""
    count = 0
    if "asic" in text or "ASIC" in text:
        for m in SHORT_BASIC.finditer(text):
            count += 1
            if count > MAX_RUNS:
                return
            run = m.group("run")
            plain = _decode(run) if len(run.rstrip("=")) % 4 != 1 else None
            if plain is not None:
                yield m.start("run"), m.end("run"), plain
    if _RUN_NEEDLE not in text.encode("utf-8", "surrogatepass").translate(_RUN_BYTES):
        return
    words = text.split()
    pos = 0
    for word in words:
        if len(word) < MIN_RUN:
            continue
        start = text.find(word, pos)  # no shorter word between can hold it
        pos = start + len(word)
        for m in ENCODED_RUN.finditer(text, start, pos):
            run = m.group()
            count += 1
            if count > MAX_RUNS:
                return
            if len(run) > MAX_RUN_CHARS or len(run) % 4 == 1:
                continue
            plain = _decode(run)
            if plain is not None:
                yield m.start(), m.end(), plain


def _decode(run: str) -> str | None:
    try:
        raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        plain = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    readable = all(c.isprintable() or c in "\0\t\r\n" for c in plain)
    return plain if readable and not plain.isspace() else None


def login_kind(text: str, start: int, plain: str) -> str | None:
    """ "PASSWORD" when the decoded run at `start` is a login with its password, else None."""
    if "\0" in plain:
        # SASL PLAIN: authorisation identity (may be empty), user, password, none with a
        # blank (NUL-separated text, a gettext catalogue's, has sentences); its context is
        # not required: IMAP and SMTP send the run on a line of its own
        parts = plain.split("\0")
        login = len(parts) == 3 and all(_SASL_PART.fullmatch(p) for p in parts[1:])
        return "PASSWORD" if login and not any(c.isspace() for c in parts[0]) else None
    if _LOGIN.fullmatch(plain) and _BASIC_BEFORE.search(text, max(start - _CONTEXT, 0), start):
        return "PASSWORD"
    if _PASSWORD_PROMPT in text[max(start - _CONTEXT - 8, 0) : start]:
        return "PASSWORD"
    return None
