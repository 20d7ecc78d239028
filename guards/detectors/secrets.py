"""Secrets detector built on detect-secrets' pattern plugins (never its entropy plugins).

STACK.md: with its default plugins detect-secrets flags every benign prompt (entropy plugins fire
on ordinary words); its pattern plugins flagged none of 2,001 benign prompts. Calling the plugins'
`analyze_line` per line costs ~25 µs per plugin per line and gives no character spans, so we
reuse the plugins' own `denylist` regexes (secret_plugin_patterns.py, copied out of the
installed detect-secrets by `make secret-patterns` and checked against it by the tests) with
`finditer`, which yields spans for redaction. Measured here on a 1 KB prompt: ~0.06 ms for
the default plugin set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from guards.detectors.credential_calls import find_calls, open_call_start
from guards.detectors.credential_codes import find_codes, open_code_start
from guards.detectors.credential_columns import find_columns, open_column_start
from guards.detectors.credential_contexts import find_contexts, open_context_start
from guards.detectors.credential_forms import find_forms, open_form_start
from guards.detectors.credential_labels import find_labelled
from guards.detectors.credential_values import find_values, open_value_start
from guards.detectors.credentials import (
    NAMED_TYPES,
    PLATFORM_KEYS,
    PLATFORM_PREFIX,
    PROVIDER_HINTS,
    PROVIDER_KEYS,
    credential_words,
    find_named,
    open_named_start,
)
from guards.detectors.encoded_credentials import decoded_runs, login_kind
from guards.detectors.escaped_json import ESCAPED_QUOTE, unescaped_view
from guards.detectors.literal_scan import LiteralScan
from guards.detectors.secret_plugin_patterns import PLUGIN_PATTERNS
from guards.detectors.seed_phrase import find_phrases, open_phrase_start
from guards.detectors.stream_tail import IGNORECASE_EXTRAS, trailing_run_start
from guards.verdict import Finding

# Finding type -> the detect-secrets plugin's regexes (its denylist, copied out by `make
# secret-patterns`: importing the plugins imports requests, guards/gen_secret_patterns.py says
# what that costs). PRIVATE_KEY's plugin is replaced below, as JWT, NPM and Stripe's are.
PLUGINS: dict[str, list[re.Pattern[str]]] = {
    kind: [re.compile(pattern, flags) for pattern, flags in patterns]
    for kind, (_, patterns) in PLUGIN_PATTERNS.items()
    if kind != "PRIVATE_KEY"
}

# detect-secrets only matches the PEM header line; the whole block must be masked, and an
# unterminated block (still streaming) counts to the end of the text. Other secrets armoured
# the same way count too: a NATS NKEY seed, an OpenVPN static (tls-auth / tls-crypt) key.
_ARMOURED = r"[A-Za-z0-9 ]{0,30} (?:PRIVATE KEY(?: BLOCK)?|NKEY SEED|Static key V1)"
PRIVATE_KEY = re.compile(
    rf"-----BEGIN{_ARMOURED}-{{5,6}}[\s\S]*?(?:-{{5,6}}END{_ARMOURED}-{{5,6}}|\Z)"
)
# PuTTY's .ppk file: from its first line to the MAC that closes it (to the text's end while the
# MAC line has not come; it ends at the line's end).
PUTTY_KEY = re.compile(r"PuTTY-User-Key-File-\d+:[\s\S]*?(?:Private-MAC:[ \t]*[0-9a-fA-F]+|\Z)")
_PUTTY_END = re.compile(r"Private-MAC:[ \t]*[0-9a-fA-F]+(?=[^0-9a-fA-F])")

# A tighter JWT than the plugin's: three base64url parts, each long enough to be a real token.
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")

# The plugin's npm pattern (`//.+/:_authToken=...` then `.*`) reaches back to any "//" earlier
# on the line, across spaces, and on to the line's end: a stream could only be guarded by
# holding every line with a URL until it ends. This one stays inside the .npmrc entry (no
# whitespace before the token), which is what an .npmrc line is, and masks the same token.
NPM = re.compile(r"//\S+?/:_authToken=\s*(?:npm_\S+|[A-Fa-f0-9-]{36})\S*")

# Discord's plugin pattern reads 27 characters of a token's last part; tokens issued since
# 2023 carry 38 there, and the last 11 were left readable in every Discord token of every
# probe (r7-r16). Ours reads the part whole, either length.
DISCORD_BOT_TOKEN = re.compile(r"[MNO][a-zA-Z\d_-]{23,25}\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27,64}")

# Stripe's plugin pattern stops after 24 characters of the key: ours masks all of it.
OWN_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "JWT": [JWT],
    "NPM_TOKEN": [NPM],
    "DISCORD_BOT_TOKEN": [DISCORD_BOT_TOKEN],
    "STRIPE_KEY": PROVIDER_KEYS["STRIPE_KEY"],
}
# Formats a plugin's type also has that its regexes miss (credentials.py says which).
EXTRA_PATTERNS = {k: v for k, v in PROVIDER_KEYS.items() if k in PLUGINS and k != "STRIPE_KEY"}
NEW_PROVIDERS = [k for k in PROVIDER_KEYS if k not in PLUGINS]
SECRET_TYPES = (*PLUGINS, "PRIVATE_KEY", *NEW_PROVIDERS, *NAMED_TYPES)

# A base64 run is decoded and searched (encoded_credentials.py), and so is a run inside what it
# decodes to: a `.dockerconfigjson` holds an `"auth"` field in base64. No deeper: a hostile text
# nested further costs no more than this.
DECODE_DEPTH = 2

# Streams (`SecretsDetector.holdback`). Every pattern but four (and the named secrets and bearer
# tokens of credentials.py, held from their name by `open_named_start`) matches only these
# characters (ASCII letters and digits, "_-+/=.\\:", Unicode digits for `\d`, and the letters
# IGNORECASE folds to ASCII), so a secret still being streamed lies inside the text's trailing
# run of them: usually the last, unfinished word.
TOKEN_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.\\:" + IGNORECASE_EXTRAS
)
# Three of the four whose matches can hold other characters, each as "a prefix of a match that
# runs to the end of the text", with a literal every such prefix holds and how far back one can
# start; the fourth, a private key block, is `_open_private_key`.
_PLUGIN_AUTH_CHARS = r"[^:/?#\[\]@!$&'()*+,;=\s]"
OPEN_MATCHES: dict[str, tuple[tuple[str, ...], re.Pattern[str], int | None]] = {
    # the plugin's `aws.{0,20}?(?:key|...).{0,20}?['"]([0-9a-zA-Z/+]{40})['"]`: 93 characters
    "AWS_ACCESS_KEY": (
        ("aws", "AWS", "Aws"),
        re.compile(
            r"aws(?:.{0,28}|.{0,20}?(?:key|pwd|pw|password|pass|token).{0,62})\Z", re.IGNORECASE
        ),
        96,
    ),
    "BASIC_AUTH_CREDENTIALS": (
        ("://",),
        re.compile(f"://{_PLUGIN_AUTH_CHARS}*(?::{_PLUGIN_AUTH_CHARS}*)?\\Z"),
        None,
    ),
    "NPM_TOKEN": (("//",), re.compile(r"//\S*?(?:/:_authToken=\s*\S*)?\Z"), None),
}
# A private key is open from its header (or a header still being written) to its END line.
PRIVATE_KEY_HEADER = re.compile(rf"-----BEGIN{_ARMOURED}-{{5,6}}")
PRIVATE_KEY_HEADER_PREFIX = re.compile(r"-----BEGIN[A-Za-z0-9 ]{0,50}-{0,6}\Z")
PRIVATE_KEY_END = re.compile(rf"-{{5,6}}END{_ARMOURED}-{{5,6}}")


def _open_private_key(text: str) -> int | None:
    """Where a private key block that has not ended yet begins (None: there is none)."""
    putty = text.rfind("PuTTY-User-Key-File-")
    if putty >= 0 and _PUTTY_END.search(text, putty) is None:
        return putty
    start = text.rfind("-----BEGIN")
    if start < 0:
        return None
    header = PRIVATE_KEY_HEADER.match(text, start)
    if header is None:
        return start if PRIVATE_KEY_HEADER_PREFIX.match(text, start) else None
    return None if PRIVATE_KEY_END.search(text, header.end()) else start


# Substrings one of which every match of a plugin's regexes contains. Checking them with `in`
# (C speed) before running the regex takes the default set from ~385 µs to ~40 µs per 1 KB of
# benign text (measured here); a plugin with no hint always runs its regexes.
HINTS: dict[str, tuple[str, ...]] = {
    "AWS_ACCESS_KEY": ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws", "AWS", "Aws"),
    "AZURE_STORAGE_KEY": ("AccountKey=",),
    "BASIC_AUTH_CREDENTIALS": ("://",),
    "GITHUB_TOKEN": ("gh",),
    "GITLAB_TOKEN": ("gl", "GR1348941"),
    "JWT": ("eyJ",),
    "MAILCHIMP_KEY": ("-us",),
    "NPM_TOKEN": ("_authToken",),
    "OPENAI_API_KEY": ("T3BlbkFJ",),
    "PYPI_TOKEN": ("pypi-",),
    "SENDGRID_KEY": ("SG.",),
    "SLACK_TOKEN": ("xox", "hooks.slack.com"),
    "SQUARE_OAUTH_SECRET": ("sq0csp-",),
    "TWILIO_KEY": ("AC", "SK"),
    "PRIVATE_KEY": ("PRIVATE KEY", "NKEY SEED", "Static key", "PuTTY-User-Key-File"),
}
for _name, _hints in PROVIDER_HINTS.items():
    HINTS[_name] = (*HINTS.get(_name, ()), *_hints)


def _digit_before_colon(text: str) -> bool:
    """Telegram tokens are `digits:...`; prose has colons, rarely right after a digit."""
    i = text.find(":")
    while i != -1:
        if i and text[i - 1].isdecimal():
            return True
        i = text.find(":", i + 1)
    return False


# A type's gate: a test of the text, the literals one of which every match holds, or None
# (always run its patterns).
Gate = Callable[[str], bool] | frozenset[str] | None


def _gate(name: str) -> Gate:
    """A cheap test every text a plugin's regexes can match passes."""
    if name == "TELEGRAM_BOT_TOKEN":
        return _digit_before_colon
    hints = HINTS.get(name)
    return frozenset(hints) if hints else None


# A value shown masked or as a format's example: a dashboard's `sk_test_••••4Kq9`, a doc's
# GitHub token of 36 capital X after `ghp_`, or an AWS key ID of sixteen zeros after `AKIA`.
# Eight identical mask characters in a row never occur in a random key of these lengths in
# practice (a PEM block's base64 may hold runs of "A", which is not a mask character, and is
# never judged here). tests/unit/test_guards_credentials.py holds such examples.
_MASK_RUN = re.compile("([Xx0*#.\u2022])\\1{7,}|\u2022\u2022|\u2026|\\*\\*\\*")


def masked(value: str) -> bool:
    """Whether a found value is shown masked or as a placeholder, not a secret."""
    return _MASK_RUN.search(value) is not None


class SecretsDetector:
    """Finds credentials by the detect-secrets pattern plugins' regexes."""

    def __init__(self, types: Iterable[str] = SECRET_TYPES) -> None:
        selected = set(types)
        unknown = selected - set(SECRET_TYPES)
        if unknown:
            raise ValueError(
                f"unknown secret types: {sorted(unknown)}; known: {list(SECRET_TYPES)}"
            )
        # One gate per type, then that type's patterns (GitLab alone has seven).
        self._groups: list[tuple[str, Gate, list[re.Pattern[str]]]] = []
        for name, denylist in PLUGINS.items():
            if name in selected:
                patterns = OWN_PATTERNS.get(name, denylist) + EXTRA_PATTERNS.get(name, [])
                self._groups.append((name, _gate(name), patterns))
        if "PRIVATE_KEY" in selected:
            self._groups.append(("PRIVATE_KEY", _gate("PRIVATE_KEY"), [PRIVATE_KEY, PUTTY_KEY]))
        for name in NEW_PROVIDERS:
            if name in selected:
                self._groups.append((name, _gate(name), PROVIDER_KEYS[name]))
        # Each literal looked for once a text (34 types share 55; a scan per type and its
        # literals cost ~60 µs a KB, one per literal ~35 µs, gated by their rarest character
        # ~9 µs: measured here).
        self._hints = LiteralScan(
            sorted({h for _, g, _ in self._groups if isinstance(g, frozenset) for h in g})
        )
        # Which groups a text can need, by what gates them: a found literal names its groups
        # directly (a loop over every group cost ~10 µs a text, most of a stream chunk's).
        self._by_literal: dict[str, list[int]] = {}
        self._ungated: list[int] = []  # always run, or gated by a test of their own
        self._platform_groups: list[int] = []
        for i, (name, gate, _) in enumerate(self._groups):
            if name in PLATFORM_KEYS:
                self._platform_groups.append(i)
            elif isinstance(gate, frozenset):
                for literal in gate:
                    self._by_literal.setdefault(literal, []).append(i)
            else:
                self._ungated.append(i)
        self._open = [OPEN_MATCHES[name] for name in OPEN_MATCHES if name in selected]
        self._private_keys = "PRIVATE_KEY" in selected
        self._named = frozenset(NAMED_TYPES) & selected
        self._platforms = bool(selected & set(PLATFORM_KEYS))

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        return self._find(text, 0)

    def _find(self, text: str, depth: int) -> list[Finding]:
        found: list[Finding] = []
        wanted = {i for literal in self._hints.present(text) for i in self._by_literal[literal]}
        wanted.update(self._ungated)
        if self._platforms and PLATFORM_PREFIX.search(text) is not None:
            wanted.update(self._platform_groups)
        for i in sorted(wanted):
            name, gate, patterns = self._groups[i]
            if callable(gate) and not gate(text):
                continue
            # Basic auth: mask only the password (group 1), keep the URL readable.
            use_group = name == "BASIC_AUTH_CREDENTIALS"
            for pattern in patterns:
                for m in pattern.finditer(text):
                    start, end = m.span(1) if use_group and m.lastindex else m.span()
                    if end > start:
                        found.append(Finding(name, start, end))
        if self._named:
            # A value a provider's pattern (or an earlier form) typed already keeps that type.
            # Characters taken are marked, so a text with thousands of values costs linear
            # time (checking each against every earlier finding took 15 s on 20,000 lines).
            low = text.lower()
            present = credential_words(low)
            taken = bytearray(len(text))
            for g in found:
                taken[g.start : g.end] = b"\x01" * (g.end - g.start)
            # The basic-auth plugin ends a URL's password at its first "@"; the URL form reads
            # one that holds "@" whole and takes its place (`cut_short`).
            cut_short = {g.start: g for g in found if g.type == "BASIC_AUTH_CREDENTIALS"}
            for f in (
                find_named(text, present)
                + find_forms(text, low, present)
                + find_calls(text, low)
                + find_columns(text, low, present)
                + find_labelled(text, low, present)
                + find_codes(text, low)
                + find_contexts(text, low)
                + find_values(text, low)
                + find_phrases(text)
            ):
                if f.type not in self._named:
                    continue
                plugin = cut_short.get(f.start)
                if (
                    plugin is not None
                    and f.type == "PASSWORD"
                    and plugin.end < f.end
                    and text.startswith("@", f.end)
                    and taken.find(1, plugin.end, f.end) < 0
                ):
                    found.remove(plugin)
                    del cut_short[f.start]
                elif taken.find(1, f.start, f.end) >= 0:
                    # a longer reading of a value a form cut short (`curl --user "u:xR7k Lp2q
                    # ..."`: the option's value ends at its first blank) takes its place
                    inside = _within(text, found, f)
                    if inside is None:
                        continue
                    for g in inside:
                        found.remove(g)
                found.append(f)
                taken[f.start : f.end] = b"\x01" * (f.end - f.start)
            if ESCAPED_QUOTE in text:
                for f in _escaped_named(text):
                    if f.type in self._named and taken.find(1, f.start, f.end) < 0:
                        found.append(f)
                        taken[f.start : f.end] = b"\x01" * (f.end - f.start)
        if depth < DECODE_DEPTH:
            found.extend(self._encoded(text, found, depth))
        found = whole_runs(text, found)
        # One finding per value: two patterns of one type may match the same key.
        return sorted(
            {f for f in found if f.type == "PRIVATE_KEY" or not masked(text[f.start : f.end])},
            key=lambda f: (f.start, f.end, f.type),
        )

    def _encoded(self, text: str, found: list[Finding], depth: int) -> list[Finding]:
        """Base64 runs that hold a secret once decoded, each masked whole with the type of what
        it holds (encoded_credentials.py says why)."""
        encoded = []
        for start, end, plain in decoded_runs(text):
            overlaps = [f for f in found if f.start < end and start < f.end]
            # a run a label found as a key ("the deploy key I pasted: LS0t...") takes the type
            # of what it decodes to (a private key), not the label's generic one
            generic = overlaps and all(
                f.type in _GENERIC and f.start <= start and end <= f.end + 2 for f in overlaps
            )
            if overlaps and not generic:
                continue
            kind = login_kind(text, start, plain) if "PASSWORD" in self._named else None
            if kind is None:
                inner = self._find(plain, depth + 1)
                kind = inner[0].type if inner else None
            if generic and kind not in (None, *_GENERIC):
                for f in overlaps:
                    found.remove(f)
                encoded.append(Finding(kind, *(overlaps[0].start, overlaps[0].end)))
            elif not generic and kind is not None:
                encoded.append(Finding(kind, start, end))
        return encoded

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """The trailing token run, or from where an open (non-token) match may have begun."""
        start = trailing_run_start(text, TOKEN_CHARS)
        for literals, prefix, reach in self._open:
            tail = text if reach is None else text[-reach:]
            if any(map(tail.__contains__, literals)):
                m = prefix.search(tail)
                if m is not None:
                    start = min(start, len(text) - len(tail) + m.start())
        if self._private_keys:
            key = _open_private_key(text)
            if key is not None:
                start = min(start, key)
        if self._named:
            for named in (
                open_named_start(text),
                open_form_start(text),
                open_call_start(text),
                open_column_start(text),
                open_code_start(text),
                open_context_start(text),
                open_value_start(text),
                open_phrase_start(text),
                _escaped_open_start(text),
            ):
                if named is not None:
                    start = min(start, named)
        return len(text) - start


_GENERIC = ("CREDENTIAL", "PASSWORD")  # the types a name or a label gives


def _within(text: str, found: list[Finding], f: Finding) -> list[Finding] | None:
    """The findings `f` overlaps, when it is a generic finding that holds each of them whole
    and they are generic too (then `f` reads more of the same value); else None. A reading
    that runs into markup (`X</Value>`) reads too far."""
    if f.type not in _GENERIC or "</" in text[f.start : f.end]:
        return None
    inside = [g for g in found if g.start < f.end and f.start < g.end]
    if not inside or any(
        g.type not in _GENERIC
        or g.start < f.start
        or g.end > f.end
        or g.end - g.start == f.end - f.start
        for g in inside
    ):
        return None
    return inside


_LONG_VALUE = 2048  # the longest value a pattern reads whole (credentials.py)
_RUN_STOPS = "\"'`,;<>"


def whole_runs(text: str, found: list[Finding]) -> list[Finding]:
    """Findings the patterns cut at their length limit, masked to the end of their run: a
    value padded past the limit must not leave its tail readable."""
    if not any(f.end - f.start >= _LONG_VALUE for f in found):
        return found
    out = []
    for f in found:
        end = f.end
        if end - f.start >= _LONG_VALUE and f.type != "PRIVATE_KEY":
            while end < len(text) and not text[end].isspace() and text[end] not in _RUN_STOPS:
                end += 1
        out.append(f if end == f.end else Finding(f.type, f.start, end, f.score))
    return out


def _escaped_named(text: str) -> list[Finding]:
    """Named values and forms of a JSON document inside a JSON string (escaped_json.py), at
    the text's own positions."""
    view = unescaped_view(text)
    low = view.text.lower()
    present = credential_words(low)
    found = []
    for f in find_named(view.text, present) + find_forms(view.text, low, present):
        found.append(Finding(f.type, *view.span_to_original(f.start, f.end)))
    return found


def _escaped_open_start(text: str) -> int | None:
    """Where a named value of an escaped document may still be growing (None: none is)."""
    last_line = text.rfind("\n") + 1
    if ESCAPED_QUOTE not in text[last_line:]:
        return None
    view = unescaped_view(text[last_line:])
    start = open_named_start(view.text)
    return None if start is None else last_line + max(view.to_original(start) - 1, 0)
