"""A random-looking key after a label that names a credential, whatever the surface form.

Why: the named forms (`NAME = value`, records, options, calls, table columns) each read one
syntax, and every new writer brings material in a syntax none of them reads: a PagerDuty
`routing-key:` in an Alertmanager file, a Kaggle `{"username": ..., "key": ...}`, ESPHome's
`encryption:` / `key:`, Vault's `Unseal Key 1:`, a mail that says "here is your API key:" and
puts the key on the next line, a numbered list of unseal keys under a heading. What they share
is a label that names a credential right before a value that looks random (`key_like`: 16
characters or more, letters mixed with digits in a part of eight or more, no code). That pair
is what this module reads, in one pass over the text's key-like runs:

- the label on the value's own line: the name (or the words, within 80 characters) right
  before the value, past quotes, `:`, `=`, `=>`, commas and brackets, ending in its
  credential word (`wireguard_private_key: "..."`, `SecretID:  ...`, "the new token is ...";
  "Password for user" labels a user, not a password);
- a value alone on its line (after a quote mark, a list marker or a code fence): the line above
  that ends in a colon, its credential word among its last twelve words ("here is your API
  key for the pilot:", "La clé d'accès du compte de service :"), across at most eight lines
  of such values (a numbered list of keys) within LABEL_REACH characters;
- a bare `key:` takes its meaning from the YAML mapping above it (`encryption:`, `api:`) or,
  in a record, from a user's name beside it (`"username": ..., "key": ...`).

A label names a credential by its words (split at `_`, `-`, blanks and camel humps): token,
secret, password, passphrase, a key that is not a public, primary, cache, sort ... key, and
run-together names (apikey, authtoken). Words that make the value an identifier or a digest
veto it (id, hash, checksum, fingerprint, commit, digest, public, name, ref, page, cursor ...):
`api_key_id`, `nextPageToken`, "SHA256 fingerprint of the key:" are not secrets.

Streams: a key-like value is the trailing run of token characters while it arrives, so the
secrets guard holds it whole (secrets.py `holdback`); once it ends, the window is judged with
its line and the LABEL_REACH characters of lines above it (guards/streaming.py `_context`,
`may_need_label`), where every label this module reads lies.
"""

from __future__ import annotations

import re

from guards.detectors.credentials import (
    KEY_QUALIFIERS,
    is_placeholder,
    key_like,
)
from guards.detectors.identifiers import code_identifier
from guards.verdict import Finding

# From a value's line start back to its farthest label: a stream reads this much again.
LABEL_REACH = 600
# A value the label's line is for, alone on its line, may be one of this many in a list.
MAX_LIST_LINES = 8
_LABEL_CHARS = 80  # the same-line label lies within this many characters before the value
_HEADING_WORDS = 12  # a heading's credential word is among its last this many words

_RUN_CHARS = "A-Za-z0-9_\\-+/=.~"
# A value is a run of key characters (found whole: a run shorter than 16 never matches, and
# a longer one matches from its first character), 16 to _MAX_VALUE long, that `_starts_value`.
_RUN = re.compile(rf"[{_RUN_CHARS}]{{16,}}")
_MAX_VALUE = 2048  # an AWS session token runs to ~1,000 characters
_BEFORE_SLASH = frozenset(" \t\r\n\"'`")
_LONG_RUN = re.compile(rf"[{_RUN_CHARS}]{{16}}")

_WORD_SPLIT = re.compile(r"[\W_]+")
_CAMEL_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")
_CREDENTIAL_PARTS = frozenset((
    "token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "passphrase",
    "pwd", "apikey", "apikeys", "authtoken", "credential", "credentials", "psk", "seed", "salt",
    "session", "sessionid", "jsessionid", "phpsessid", "authkey", "preauthkey", "preauthkeys",
    # other languages' key, token and password words
    "clé", "cle", "clave", "chiave", "schlüssel", "schluessel", "sleutel", "chave", "klucz",
    "klíč", "kulcs", "anahtar", "kunci", "nyckel", "nøgle", "avain", "ключ", "токен", "пароль",
    "contraseña", "senha", "passwort", "wachtwoord", "lösenord", "hasło", "heslo", "şifre",
))  # fmt: skip
_KEY_PARTS = frozenset(("key", "keys"))
_KEY_WORDS_BEFORE = KEY_QUALIFIERS | {
    "routing", "license", "product", "activation", "stream", "write", "ingest", "server", "user",
    "function", "session", "join", "registration", "install", "installation", "provisioning",
    "device", "consumer", "partner", "merchant", "terminal", "gateway", "sdk", "live", "prod",
    "production", "your", "our", "personal", "team", "org", "organization", "unseal", "cluster",
    "node", "agent", "tenant", "instance", "workspace", "bootstrap",
    # symmetric and one-time-code keys: Airflow's `fernet_key`, `aes_key`, a TOTP key
    "fernet", "aes", "cipher", "symmetric", "jwt", "totp", "otp", "mfa", "crypt", "crypto",
    "decryption", "wrapping", "kek", "dek",
}  # fmt: skip
# A run-together name ending in a credential word after a qualifier: apikey, privatekey,
# accesstoken, clientsecret (never "monkey", "turkey": the part before must be a qualifier).
_RUN_TOGETHER_ENDS = ("key", "keys", "token", "secret", "password", "passwd", "salt", "pass")
_RUN_TOGETHER_STARTS = KEY_QUALIFIERS | {
    "api", "bot", "access", "auth", "client", "secret", "preauth", "store", "keystore",
    "truststore", "password", "db", "root", "smtp", "mail",
}  # fmt: skip
# Words that make a labelled value an identifier, a digest or a name rather than a secret.
_VETO_PARTS = frozenset((
    "id", "ids", "uid", "uuid", "guid", "hash", "hashes", "checksum", "digest", "sha", "sha1",
    "sha256", "sha512", "md5", "fingerprint", "fingerprints", "fp", "commit", "revision", "rev",
    "etag", "public", "pub", "publishable", "primary", "foreign", "sort", "partition", "cache",
    "idempotency", "dedup", "dedupe", "lookup", "row", "range", "object", "bucket", "file",
    "path", "name", "names", "ref", "refs", "arn", "alias", "label", "type", "types", "field",
    "format", "length", "len", "size", "ttl", "expiry", "expires", "expiration", "url", "uri",
    "endpoint", "version", "header", "policy", "policies", "role", "roles",
    "accessor", "page", "next", "cursor", "continuation", "sync", "resume", "request",
    "trace", "span", "correlation", "nonce", "count", "counts", "limit", "max", "min", "usage",
    "hint", "hints", "example", "sample", "test", "dummy", "fake", "placeholder", "old",
    "previous", "expired", "revoked", "rotated", "ssh", "gpg", "pgp", "host", "known",
    "map", "index", "mapping", "hotkey", "shortcut", "issue", "jira", "project", "env",
    "variable", "var", "manager", "store", "mount", "provider", "backend", "rotation",
    "cancellation", "cancel", "lock", "lease", "fencing", "bos", "eos", "pad", "unk", "sep",
    "cls", "mask", "special", "vocab", "input", "output", "prompt", "completion", "image",
    "text", "word", "translation", "i18n", "message", "redis", "react", "registry", "dict",
    "group", "query", "element", "column", "table", "composite", "unique", "music",
))  # fmt: skip
_SEPARATORS = " \t\"'`:=,([{<>|\u00ab\u00bb\u201c\u201d\u2018\u2019\uff1a"
_LIST_MARKER = re.compile(r"[ \t]*(?:>[ \t>]*)?(?:[-*\u2022][ \t]+|\d{1,2}[.):][ \t]+)?")
FENCE = re.compile(r"[ \t]*(?:```|~~~)[\w-]*[ \t]*")  # a Markdown code fence line
# matched on the reversed text before a value; Indic scripts' vowel signs are marks, not \w
_NAME_CHARS = re.compile(r"[\w .\u0900-\u0dff-]+")
# A value wrapped in a conversion or a call: `NAME = bytes.fromhex(`, `NAME = []byte(`,
# `NAME: SecretStr(`; the label is NAME.
_WRAPPED = re.compile(r"(?P<name>[\w.]+)[\"'\]]?[ \t]*(?::=|=|:)[ \t]*[\w.\[\]]+\Z")
# A name and the values of its list before the one being labelled: `NAME=v1,v2` (the last
# value's base64 padding already stripped with the separators).
_LISTED = re.compile(
    rf"(?P<name>[A-Za-z][\w.-]*)[ \t]*[:=][ \t]*[\"']?(?:[{_RUN_CHARS}]+[\"']?[ \t]*,[ \t]*[\"']?)*"
    rf"[{_RUN_CHARS}]+\Z"
)
_ASIDE = re.compile(r"[ \t]*\([^()]{0,60}\)\Z")  # a label's closing aside, "(...)"
# A shell prompt opening a command line: `$ `, `# `, `user@host:~$ `, `PS C:\> `, `> `.
_PROMPT = re.compile(r"[ \t]*(?:[\w.@-]+(?::[^\s$#>]*)?[ \t]?)?(?:[$#%]|PS [^>\n]{0,80}>)[ \t]+\S")
_USER_FIELD = re.compile(r"""["']?(?:user(?:name)?|login|email|account)["']?\s*[:=]""", re.I)
# Keys public by design, whatever their label: Mapbox's and Stripe's publishable keys.
_PUBLIC_PREFIXES = ("pk.", "pk_")
# Words a text may name a key with and `present` (credentials.credential_words) misses; each is
# one scan of the text (~0.7 us a KB), so only these two open the search by themselves (a
# label's other words are looked for within it: _LABEL_HINTS).
_EXTRA_HINTS = ("credential", "session")
_NON_ASCII_HINTS = ("clé", "schlüssel", "klíč", "nøgle", "ключ", "токен", "пароль", "hasło",
                    "şifre", "lösenord")  # fmt: skip
# Every label naming a credential holds one of these (lower case) or of _NON_ASCII_HINTS.
_LABEL_HINTS = ("key", "token", "secret", "pass", "pw", "psk", "seed", "salt", "clave", "contrase",
                "senha", "wachtwoord", "sleutel", "nyckel", "avain", "kulcs", "heslo", "sessid",
                "chiave", "chave", "klucz", "kunci", "anahtar", *_EXTRA_HINTS)  # fmt: skip


def _holds_hint(low: str, ascii_hints: tuple[str, ...]) -> bool:
    if any(map(low.__contains__, ascii_hints)):
        return True
    return not low.isascii() and any(map(low.__contains__, _NON_ASCII_HINTS))


def _split_words(label: str) -> list[str]:
    """A label's words: split at blanks, punctuation and `_`, an ASCII word also at its camel
    humps ("routingKey", "SecretID"); a word with other letters stays whole ("Schlüssel")."""
    words = []
    for word in _WORD_SPLIT.split(label):
        if word.isascii():
            words.extend(_CAMEL_PARTS.findall(word))
        elif word:
            words.append(word)
    return words


def _parts(label: str) -> list[str]:
    return [p.lower() for p in _split_words(label)]


def names_credential(label: str, *, heading: bool = False) -> str | None:
    """The finding type a label gives its value ("PASSWORD" or "CREDENTIAL"), None when it
    names none: the last credential word decides, and a veto word near it (four words before,
    two after: "SHA256 fingerprint of the signing key") makes the value an identifier or a
    digest. On the value's own line the label
    ends in that word (or in "is", a number ...: "Password for user" labels a user); a heading
    line ending in a colon may say more after it ("the API key for the pilot:")."""
    words = _split_words(label)
    parts = [w.lower() for w in words]
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        # "Mailgun key", "Datadog key": a capital, then lower case, is a provider's name
        proper = i > 0 and words[i - 1][:1].isupper() and words[i - 1][1:].islower()
        kind = _part_kind(part, parts[i - 1] if i else "", proper)
        if kind is None:
            continue
        after = parts[i + 1 :]
        if part == "secret" and after[:1] == ["id"]:  # Vault's and Consul's SecretID
            after = after[1:]
        if not heading and not all(p in _AFTER_WORDS or p.isdigit() for p in after):
            return None
        near = parts[max(i - 4, 0) : i] + after[:2]
        if not _VETO_PARTS.isdisjoint(near):
            return None
        return kind
    return None


# What may follow a credential word on its value's line: "the token is", "Unseal Key 1".
_AFTER_WORDS = frozenset(("is", "was", "are", "now", "here", "value", "string", "new", "es",
                          "ist", "est", "é", "è", "e", "era", "är", "er", "on", "jest", "je",
                          "là", "adalah", "olan"))  # fmt: skip
_PASSWORD_STARTS = ("pass", "pwd", "contrase", "senha", "wacht", "lösen", "hasło", "heslo",
                    "şifre", "пароль")  # fmt: skip


def _part_kind(part: str, before: str, proper_noun: bool) -> str | None:
    if part in _CREDENTIAL_PARTS:
        return "PASSWORD" if part.startswith(_PASSWORD_STARTS) else "CREDENTIAL"
    if part in _KEY_PARTS:
        # "key" alone is a credential's only after a word that makes it one (a cache key, a
        # translation key, "this key" are not), or after a provider's name
        named = before in _KEY_WORDS_BEFORE or (proper_noun and before not in _VETO_PARTS)
        return "CREDENTIAL" if named else None
    for end in _RUN_TOGETHER_ENDS:
        if part.endswith(end) and part[: -len(end)] in _RUN_TOGETHER_STARTS:
            return "PASSWORD" if end.startswith("pass") else "CREDENTIAL"
    return None


def may_need_label(window: str) -> bool:
    """Whether text about to be judged holds a run long enough to be a labelled key: then a
    stream reads its line and the lines above it again (LABEL_REACH)."""
    return _LONG_RUN.search(window) is not None


def find_labelled(text: str, low: str, present: list[str]) -> list[Finding]:
    """Key-like values after a label that names a credential (`present`:
    `credentials.credential_words(low)`; `low` is `text.lower()`). The label is checked
    before the value: in code most long runs are names under no such label."""
    if not present and not _holds_hint(low, _EXTRA_HINTS):
        return []
    found: list[Finding] = []
    for m in _RUN.finditer(text):
        start, end = m.span()
        # `name=value` run together (a cookie, a query string): the value after the last "="
        # that base64's padding does not explain
        eq = m.group().rstrip("=").rfind("=")
        if eq >= 0:
            start += eq + 1
        if end - start > _MAX_VALUE or not _starts_value(text, start):
            continue
        value = text[start:end].rstrip(".")
        if len(value) < 16:
            continue
        if text.startswith(("(", "["), end) or value.startswith(_PUBLIC_PREFIXES):
            continue  # a call or an index: code; a key public by design
        kind = _label_kind(text, low, start, end)
        if kind is None or code_identifier(value) or not key_like(value) or is_placeholder(value):
            continue
        found.append(Finding(kind, start, start + len(value)))
    return found


def _starts_value(text: str, start: int) -> bool:
    """A run that starts with a letter or a digit, or with base64's "/" or "+" after a blank
    or a quote: a URL's path (after "://" or a host) and a `--option` are no values."""
    first = text[start]
    if first.isascii() and first.isalnum():
        return True
    return first in "/+" and (start == 0 or text[start - 1] in _BEFORE_SLASH)


def _label_kind(text: str, low: str, start: int, end: int) -> str | None:
    line_start = text.rfind("\n", 0, start) + 1
    near = max(line_start, start - _LABEL_CHARS)
    before = text[near:start]
    if _LIST_MARKER.fullmatch(before):
        # alone on its line: the line ends right after it (`host.example.com:5432:db:user:pw`
        # is not); a stream knows that character once the run has ended
        if end < len(text) and text[end] not in "\r\n":
            return None
        return _heading_kind(text, line_start)
    if not _holds_hint(low[near:start], _LABEL_HINTS):
        return None
    label = before.rstrip(_SEPARATORS + "-")
    between = before[len(label) :]
    if "," in between:  # a list's next value (`APP_KEYS=k1==,k2==`): the list's name labels it
        listed = _LISTED.search(label)
        if listed is not None:
            label = listed.group("name")
    if "(" in between:
        if not any(map(between.__contains__, "\"'`")):
            return None  # a name passed to a call, `embed_tokens(ScaledWordEmbedding)`: code
        wrapped = _WRAPPED.search(label)  # `cookie_secret = bytes.fromhex("...")`
        if wrapped is not None:
            label = wrapped.group("name")
    aside = _ASIDE.search(label)  # "RADIUS shared secret (for the branch routers only):"
    if aside is not None:
        label = label[: aside.start()]
    tail = _NAME_CHARS.match(label[::-1])
    words = label[len(label) - (tail.end() if tail else 0) :].lstrip(" .-_")
    if not words:
        return None
    kind = names_credential(words)
    if kind is None and _parts(words) == ["key"]:
        kind = _bare_key_kind(text, line_start, before)
    if kind is None and ":" in between:
        # a clause that ends in a colon on the value's own line reads as a heading does: "Dit
        # is het token dat ik in Moneybird heb aangemaakt: X", "key secret यह है: X"; no word
        # of it may make the value an identifier or a digest ("...the file's sha256:")
        clause = " ".join(words.split()[-_HEADING_WORDS:])
        if _VETO_PARTS.isdisjoint(_parts(clause)):
            kind = names_credential(clause, heading=True)
    return kind


def _heading_kind(text: str, line_start: int) -> str | None:
    """A value alone on its line: the label is the line above ending in a colon, past other
    lone values (a list of keys) and code fences."""
    floor = max(line_start - LABEL_REACH, 0)
    end = line_start - 1
    for _ in range(MAX_LIST_LINES + 2):
        if end < floor:
            return None
        start = text.rfind("\n", 0, end) + 1
        if start < floor:
            return None
        line = text[start:end].rstrip("\r \t")
        if FENCE.fullmatch(line) or _lone_value(line):
            end = start - 1
            continue
        if _PROMPT.match(line):  # a command's output: `$ kubeadm token create`
            return names_credential(line, heading=True)
        if not line.endswith((":", "\uff1a")):
            return None
        words = line.rstrip(":\uff1a \t").split()[-_HEADING_WORDS:]
        return names_credential(" ".join(words), heading=True)
    return None


def _lone_value(line: str) -> bool:
    marker = _LIST_MARKER.match(line)
    at = marker.end() if marker else 0
    run = _RUN.fullmatch(line, at)
    return run is not None and len(line) - at <= _MAX_VALUE and _starts_value(line, at)


def _bare_key_kind(text: str, line_start: int, before: str) -> str | None:
    """`key:` alone: a credential's under a YAML mapping named for one (`encryption:`, `api:`)
    or beside a user's name in a record (kaggle.json)."""
    if _USER_FIELD.search(before):
        return "CREDENTIAL"
    indent = len(before) - len(before.lstrip(" "))
    if indent == 0 or line_start == 0:
        return None
    above_end = line_start - 1
    above_start = text.rfind("\n", 0, above_end) + 1
    if above_start < line_start - LABEL_REACH:
        return None
    above = text[above_start:above_end].rstrip("\r ")
    above_indent = len(above) - len(above.lstrip(" "))
    if above_indent >= indent or not above.endswith(":"):
        return None
    parent = above.strip().rstrip(":").strip("\"'- ")
    if parent.lower() in KEY_QUALIFIERS or parent.lower() == "api":
        return "CREDENTIAL"
    return names_credential(parent)
