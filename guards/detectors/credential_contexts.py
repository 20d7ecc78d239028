"""Credentials whose name is not beside them but in their context:

- a `key` inside a block named for a cipher or a credential (Magento's `'crypt' => ['key' =>
  'X']`, `"encryption": {"key": "X"}`, YAML's `api:` then `  key: X`), where the value must look
  like a random key (a bare `key` is everywhere: an object's, a sort's, a cache's);
- the `key` line of a RADIUS or TACACS+ server block (Cisco IOS-XE: `radius server ISE1` then
  ` key X`; a type-7 `key 7 X` is reversible, so it counts too);
- a pre-shared key file's content: a line of 32 hex digits or more after a PSK is named
  (Zabbix's `TLSPSKFile`, "the .psk file contains:"), unless a digest is named closer to it;
- a password named earlier and referred to as "the old one was X" / "the new one is X";
- a WordPress application password, six groups of four random letters and digits
  (`Xq7R 4mTz Lp9W b2Kd Vn8s Hc3F`: the docs' `abcd EFGH 1234 ijkl MNOP 5678` has no group that
  mixes, and stays);
- an API client handed its key by position: `MPRester("X")`, `tweepy.Client("X")`,
  `SomeApi("X")` (the callee's name says it is a client; the value must look like a key);
- Exim's `client_send = : user : X` / `^user^X` (the last field of a plaintext login);
- a key named in Chinese, Japanese or Korean prose ("API 키는 X", "密钥是 X").

Each finding is the value only; placeholders and references are never findings. Streams:
`open_context_start` says from where a form whose value may hold symbols may still be growing
(a value of letters and digits only lies in the trailing token run `secrets.py` holds anyway),
and `context_reach` how much released text before the held window its evidence may need.
"""

from __future__ import annotations

import re

from guards.detectors.credentials import (
    is_placeholder,
    key_like,
    named_value_kind,
    password_shaped,
)
from guards.verdict import Finding

_SEP = r"(?:=>|:|=)"
_CIPHER_PARENTS = frozenset(("crypt", "crypto", "cipher", "encrypt", "fernet", "aes"))
# found from the literal "key" on (a pattern that starts at the parent's name tried every
# position of a text: ~150 µs a KB of code), the parent then read before it
KEY_VALUE = re.compile(
    rf"key[\"']?[ \t]*{_SEP}[ \t]*(?P<quote>[\"']?)(?P<value>[^\s\"',\]}});]{{16,200}})(?P=quote)"
)
PARENT_BEFORE = re.compile(
    rf"(?P<parent>[A-Za-z_][\w-]{{0,40}})[\"']?[ \t]*{_SEP}[ \t]*(?:array[ \t]*\()?[\[{{(]?\s*"
    r"[\"']?\Z"
)
_PARENT_REACH = 120
OPEN_PARENT_KEY = re.compile(rf"[\"']?key[\"']?[ \t]*{_SEP}[ \t]*[\"']?[^\s\"',\]}});]{{0,200}}\Z")

SERVER_BLOCK_KEY = re.compile(
    r"(?m)^[ \t]*(?:radius|tacacs\+?)[ -]server\b[^\n]*\n(?:[ \t]+[^\n]*\n){0,12}?"
    r"[ \t]+key[ \t]+(?:[07][ \t]+)?(?P<value>\S{3,200})[ \t]*\r?$"
)
OPEN_SERVER_BLOCK_KEY = re.compile(r"(?m)^[ \t]+key(?:[ \t]+\S{0,200})?\Z")

_PSK_CUE = re.compile(r"(?i:psk|pre-?shared[ \t]+key)")
_DIGEST_CUE = re.compile(r"(?i:sha\d*|md5|digest|checksum|hash|fingerprint|commit)")
HEX_LINE = re.compile(r"(?m)^[ \t]*(?P<value>[0-9a-fA-F]{32,512})[ \t]*\r?$")
_PSK_REACH = 300  # the PSK is named within this many characters before its file's line
_DIGEST_REACH = 80

_PASSWORD_CUE = re.compile(
    r"(?i:password|passphrase|passwd|\bpwd\b|\bpass\b|\bpin\b|kennwort|passwort|contrase|"
    r"senha|mot de passe|wachtwoord|hasło|heslo|lösenord|adgangskode|salasana)"
)
_QUALIFIER = r"\b(?:old|new|previous|current|former|temporary|temp|default|initial|other|backup)"
_OPENING_QUOTES = "\"'\u201c\u2018"
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
REFERRED = re.compile(
    rf"(?i:{_QUALIFIER}[ \t]+one[ \t]+(?:is|was|will[ \t]+be|used[ \t]+to[ \t]+be)[ \t]*:?[ \t]+)"
    rf"(?P<quote>[{_OPENING_QUOTES}]?)(?P<value>[^\s{_QUOTES},;]{{6,64}})"
)
# held once "one is" / "one was" has come: a stream then reads the window with the line it is
# on and the text before it (`context_reach`, " one"), so the qualifier and the password's
# name are read with it
OPEN_REFERRED = re.compile(
    rf"(?i:{_QUALIFIER}[ \t]+one[ \t]+(?:is|was|will[ \t]+be|used[ \t]+to[ \t]+be)[ \t]*:?)"
    rf"[ \t]*[{_OPENING_QUOTES}]?\S{{0,64}}\Z"
)
_REFERRED_REACH = 300  # the password is named within this many characters before "one"
_QUALIFIER_BEFORE = re.compile(rf"{_QUALIFIER}\Z")
_QUALIFIER_LENGTH = len("temporary")

# a run of six groups of four or more ("looks like Xq7R ..." starts a run a group early)
APP_PASSWORD_RUN = re.compile(r"(?<![\w-])(?:[A-Za-z0-9]{4} ){5,}[A-Za-z0-9]{4}(?![\w-])")
_GROUPS = 6
# four groups of four after a blank, found from the literal blank on: the run's own pattern
# tries every position (~30 µs a KB), this one ~4, and prose seldom has four four-letter words
# (six groups hold four after a blank, whatever stands before the first)
APP_PASSWORD_GATE = re.compile(
    r" [A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4}(?![\w-])"
)
_IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}")
OPEN_APP_PASSWORD = re.compile(r"(?<![\w-])(?:[A-Za-z0-9]{4} ){0,5}[A-Za-z0-9]{0,4}\Z")
_MIXED_GROUPS = 4  # of six: a digit beside a letter, or both cases past the first letter

_CLIENT = r"(?:(?<![\w.])|(?<=\.))(?:\w{0,40}(?:Client|Rester|API|Api|SDK|Sdk)|OWM|Mixpanel)"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")  # Twilio's `Client(SID, token)`: an id
# a quoted run opening a call's arguments, found from the literal "(" on; the callee's name is
# then read before it (a pattern starting at the name tried every position: ~60 µs a KB of code)
CALL_STRING = re.compile(r"\([ \t]*(?P<quote>[\"'])(?P<value>[A-Za-z0-9_.-]{16,200})(?P=quote)")
CALLEE_BEFORE = re.compile(rf"{_CLIENT}[ \t]*\Z")

# A key named in Chinese, Japanese or Korean prose, which writes no blank around the word:
# "API 키는 X 이고", "APIキーは X です", "密钥是 X"
CJK_KEY = re.compile(
    r"(?:키|キー|密钥|秘钥|密鑰|토큰|トークン|令牌)"
    r"(?:는|은|가|이|が|は|を|是|为|為|\uff1a|:|=|[ \t])+"
    r"(?P<value>[A-Za-z0-9_+/=.-]{16,200})"
)
_CJK_KEY_HINTS = ("키", "キー", "密钥", "秘钥", "密鑰", "토큰", "トークン", "令牌")

EXIM_SEND = re.compile(
    r"(?m)^[ \t]*client_send[ \t]*=[ \t]*(?P<sep>[:^])[^\n]*?(?P=sep)[ \t]*"
    r"(?P<value>[^\s:^][^\n:^]{0,200}?)[ \t]*\r?$"
)
OPEN_EXIM_SEND = re.compile(r"(?m)^[ \t]*client_send\b[^\n]{0,220}\Z")


def find_contexts(text: str, low: str) -> list[Finding]:
    """Values these contexts name as credentials (`low` is `text.lower()`)."""
    found: list[Finding] = []
    if "key" in low:
        found.extend(_parent_keys(text))
        if "server" in low and ("radius" in low or "tacacs" in low):
            found.extend(
                Finding("PASSWORD", *m.span("value"))
                for m in SERVER_BLOCK_KEY.finditer(text)
                if not is_placeholder(m.group("value"))
            )
    if "psk" in low or "shared" in low:
        found.extend(_psk_lines(text))
    if " one " in low:
        found.extend(_referred(text, low))
    if text.count(" ") >= 5 and APP_PASSWORD_GATE.search(text) is not None:
        for m in APP_PASSWORD_RUN.finditer(text):
            found.extend(_app_passwords(m.group(), m.start()))
    if "(" in text:
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in CALL_STRING.finditer(text)
            if key_like(m.group("value"))
            and not is_placeholder(m.group("value"))
            and not _ACCOUNT_SID.fullmatch(m.group("value"))
            and CALLEE_BEFORE.search(text, max(m.start() - 60, 0), m.start()) is not None
        )
    if not text.isascii() and any(map(text.__contains__, _CJK_KEY_HINTS)):
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in CJK_KEY.finditer(text)
            if key_like(m.group("value")) and not is_placeholder(m.group("value"))
        )
    if "client_send" in text:
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in EXIM_SEND.finditer(text)
            if not is_placeholder(m.group("value")) and "$" not in m.group("value")
        )
    return found


def _parent_keys(text: str) -> list[Finding]:
    found = []
    for m in KEY_VALUE.finditer(text):
        value = m.group("value")
        if not key_like(value) or is_placeholder(value):
            continue
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_"):
            continue  # "monkey", "api_key": a longer name (the named form's)
        before = PARENT_BEFORE.search(text, max(m.start() - _PARENT_REACH, 0), m.start())
        if before is None:
            continue
        parent = before.group("parent")
        cipher = parent.lower().strip("_-") in _CIPHER_PARENTS
        if cipher or named_value_kind(f"{parent}_key", value, quoted=True) is not None:
            found.append(Finding("CREDENTIAL", *m.span("value")))
    return found


def _psk_lines(text: str) -> list[Finding]:
    found = []
    for m in HEX_LINE.finditer(text):
        start = m.start("value")
        if _PSK_CUE.search(text, max(start - _PSK_REACH, 0), start) is None:
            continue
        if _DIGEST_CUE.search(text, max(start - _DIGEST_REACH, 0), start) is not None:
            continue
        found.append(Finding("PASSWORD", *m.span("value")))
    return found


def _referred(text: str, low: str) -> list[Finding]:
    """Matched at each " one " (found in C): a search for the qualifiers tried every position
    of a text (~45 µs a KB of code)."""
    found = []
    j = low.find(" one ")
    while j != -1:
        at = max(j - _QUALIFIER_LENGTH, 0)
        m = _QUALIFIER_BEFORE.search(low, at, j)
        j = low.find(" one ", j + 1)
        if m is None:
            continue
        m = REFERRED.match(text, m.start())
        if m is None:
            continue
        cue = _PASSWORD_CUE.search(text, max(m.start() - _REFERRED_REACH, 0), m.start())
        value = m.group("value").rstrip(".)")
        if cue is None or not password_shaped(value) or is_placeholder(value):
            continue
        start = m.start("value")
        found.append(Finding("PASSWORD", start, start + len(value)))
    return found


def _mixed(group: str) -> bool:
    digits = any(c.isdigit() for c in group)
    letters = any(c.isalpha() for c in group)
    cases = any(c.isupper() for c in group[1:]) and any(c.islower() for c in group)
    return (digits and letters) or cases


def _app_passwords(run: str, at: int) -> list[Finding]:
    """The application passwords in a run of four-character groups: six groups of which most
    mix, moved on past a leading word while the next six mix as much ("like Xq7R 4mTz ...")."""
    groups = run.split(" ")
    mixed = [_mixed(g) for g in groups]
    found = []
    j = 0
    while j + _GROUPS <= len(mixed):
        score = sum(mixed[j : j + _GROUPS])
        later = sum(mixed[j + 1 : j + 1 + _GROUPS]) if j + 1 + _GROUPS <= len(mixed) else -1
        if score < _MIXED_GROUPS or (not mixed[j] and later >= score):
            j += 1
        elif _IBAN_START.fullmatch(groups[j]):  # an IBAN grouped in fours: its country first
            j += _GROUPS
        else:
            start = at + 5 * j
            found.append(Finding("PASSWORD", start, start + 5 * _GROUPS - 1))
            j += _GROUPS
    return found


_KEY_OPEN_REACH = 240  # `"key" => "` and a value of up to 200 characters; Exim's line
_REFERRED_OPEN_REACH = 110  # "previous one used to be: '" and 64 characters
# Streams: the evidence of a `key` line (a block's name up to 12 lines above) and of a PSK's
# or a referred password's line (their cue) stands in text already released.
_KEY_EVIDENCE_REACH = 600
_CUE_EVIDENCE_REACH = _PSK_REACH
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32}")


def context_reach(line: str) -> int:
    """How many characters of released text before a stream's held window the forms of this
    module may need to read (0: none), so the window is checked with its evidence; `line` is
    the window with the released part of its line in front."""
    low = line.lower()
    if "key" in low:
        return _KEY_EVIDENCE_REACH
    if " one" in low or (len(line) >= 32 and _HEX_RUN.search(line) is not None):
        return _CUE_EVIDENCE_REACH
    return 0


def open_context_start(text: str) -> int | None:
    """Where a form of this module that may still be growing at the end of `text` begins
    (None: none is); each lies within the last few hundred characters."""
    starts: list[int] = []
    at = max(len(text) - _KEY_OPEN_REACH, 0)
    if _holds(text, at, _KEY_SPELLINGS):
        for pattern in (OPEN_PARENT_KEY, OPEN_SERVER_BLOCK_KEY):
            if pattern is OPEN_SERVER_BLOCK_KEY and "radius" not in text and "tacacs" not in text:
                continue
            m = pattern.search(text, at)
            if m is not None:
                starts.append(m.start())
    if text.find("client_send", at) != -1:
        m = OPEN_EXIM_SEND.search(text, at)
        if m is not None:
            starts.append(m.start())
    at = max(len(text) - _REFERRED_OPEN_REACH, 0)
    if _holds(text, at, _ONE_SPELLINGS):
        m = OPEN_REFERRED.search(text, at)
        if m is not None:
            starts.append(m.start())
    # six groups of four and their blanks (29 characters): looked for only after a group of
    # four and a blank, with up to four characters since (~0.2 µs; a search, ~2 µs a chunk)
    k = text.rfind(" ")
    if 4 <= k >= len(text) - 5 and text[k - 4 : k].isalnum() and (k == 4 or text[k - 5] == " "):
        m = OPEN_APP_PASSWORD.search(text, max(len(text) - 29, 0))
        if m is not None and m.end() > m.start() and any(map(_mixed, m.group().split(" "))):
            starts.append(m.start())
    return min(starts) if starts else None


_KEY_SPELLINGS: tuple[str, str, str] = ("key", "Key", "KEY")
_ONE_SPELLINGS: tuple[str, str, str] = (" one", " One", " ONE")


def _holds(text: str, at: int, spellings: tuple[str, str, str]) -> bool:
    """Whether `text` holds one of `spellings` from `at` on (no copy of the text made)."""
    lower, title, upper = spellings
    return text.find(lower, at) != -1 or text.find(title, at) != -1 or text.find(upper, at) != -1
