"""Passwords handed to a call or a command by position, where no name sits beside the value:

- login pairs in code: `requests.get(url, auth=("user", "X"))`, `HTTPBasicAuth("user", "X")`,
  Elasticsearch's `basic_auth=("elastic", "X")`, aiohttp's `BasicAuth("user", "X")`;
- PHP's connections: `mysqli_connect("host", "user", "X", "db")`, `new mysqli(...)`,
  `new PDO($dsn, "user", "X")`;
- PowerShell's `ConvertTo-SecureString "X" -AsPlainText`;
- a Redis `AUTH [user] X` at a client's prompt; Apache's `htpasswd -b FILE USER X`; BIND's
  `nsupdate -y [alg:]name:X` (a TSIG key); Tasmota's `Password1 X;` / `MqttPassword X;`;
- strongSwan's ipsec.secrets (`: PSK "X"`, `user : EAP "X"`, XAUTH);
- a Groovy / Gradle DSL's `password "X"` (a call without parentheses; in prose too: "the
  password 'X'"; a game server's `rcon_password "X"`), where the value must look like a password;
- Twilio's `Client("AC...", "X")`: the auth token after the account SID.

Each finding is the value only, judged like a named one (placeholders, references and templates
are never findings). Streams: `open_call_start` says from where a call or a command may still
be growing, so the value is held from the call's name on.
"""

from __future__ import annotations

import re

from guards.detectors.credentials import is_placeholder, key_like, password_shaped
from guards.detectors.literal_scan import HintGroups
from guards.verdict import Finding

_VALUE = r"(?P<quote>[\"'])(?P<value>[^\"'\n]{3,200})(?P=quote)"
_QUOTED = r"[\"'][^\"'\n]{0,200}[\"']"
_AUTH_CALL = r"\b(?:auth|http_auth|basic_auth|(?:HTTP)?(?:Basic|Digest|Proxy)Auth)[ \t]*"
AUTH_PAIR = re.compile(
    rf"{_AUTH_CALL}(?:=[ \t]*\(|\()[ \t]*(?:login=|username=)?{_QUOTED}[ \t]*,[ \t]*"
    rf"(?:password=)?{_VALUE}"
)
OPEN_AUTH_PAIR = re.compile(rf"{_AUTH_CALL}[=(][^\n)]{{0,300}}\Z")
# Wi-Fi and RCON clients: `wlan.connect("ssid", "X")` (MicroPython), `WiFi.begin("ssid", "X")`
# (Arduino), `wifiMulti.addAP(...)`, `MCRcon("host", "X")`; AWS's Java SDK
# `AwsBasicCredentials.create("AKIA...", "X")`.
_PAIR_CALL = (
    r"\b(?:(?:wlan0?|sta(?:_if)?|wifi|WiFi|network|station|nic|wifiMulti)\.(?:connect|begin|addAP)"
    r"|MCRcon|AwsBasicCredentials\.create|AwsSessionCredentials\.create"
    r"|new[ \t]+BasicAWSCredentials"
    # Twilio's `Client("AC<account SID>", "<auth token>")`: the SID says whose client it is
    r"|\bClient(?=[ \t]*\([ \t]*[\"']AC[0-9a-fA-F]{32}[\"']))[ \t]*\("
)
PAIR_CALL = re.compile(rf"{_PAIR_CALL}[ \t]*{_QUOTED}[ \t]*,[ \t]*{_VALUE}")
OPEN_PAIR_CALL = re.compile(rf"{_PAIR_CALL}[^\n)]{{0,300}}\Z")
# Redis: `CONFIG SET requirepass X`, `ACL SETUSER name on >X`, and an ACL file's lines
# (`user name on >X ~* +@all`: a rule list saying "on" or "off"; `#<sha256>` is a hash)
REDIS_SECRET = re.compile(
    r"\bCONFIG[ \t]+SET[ \t]+(?:requirepass|masterauth)[ \t]+"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"']{3,200})(?P=quote)"
    r"|\bACL[ \t]+SETUSER[ \t][^\n>]{1,200}?[ \t]>(?P<acl>[^\s]{3,200})"
    r"|^[ \t]*user[ \t]+[^\s>:]+(?=[^\n]*[ \t](?:on|off)(?:[ \t]|$))[ \t][^\n>]{0,200}?"
    r"(?<=[ \t])>(?P<file>[^\s]{3,200})",
    re.MULTILINE,
)
OPEN_REDIS_SECRET = re.compile(
    r"\b(?:CONFIG[ \t]+SET|ACL[ \t]+SETUSER)\b[^\n]{0,300}\Z"
    r"|\A[ \t]*user[ \t]+[^\s>:]+[ \t][^\n]{0,300}?[ \t](?:on|off|>)[^\n]{0,300}\Z"
)
# A mail server's or a directory's password in clear after its scheme: Dovecot's passwd-file
# (`jo@shop.example:{PLAIN}X::::`), OpenLDAP's `userPassword: {CLEARTEXT}X`
CLEAR_SCHEME = re.compile(
    r"\{(?:PLAIN|CLEAR|CLEARTEXT|PLAINTEXT)\}(?P<value>[^\s:]{3,200})", re.IGNORECASE
)
OPEN_CLEAR_SCHEME = re.compile(
    r"\{(?:PLAIN|CLEAR|CLEARTEXT|PLAINTEXT)\}[^\s:]{0,200}\Z", re.IGNORECASE
)
_CLEAR_HINTS = ("{PLAIN}", "{CLEAR", "{PLAINTEXT}", "{plain}", "{clear", "{plaintext}")
# "admin / X", "root / 'X'", "login jo@example.com / X" in a note: a well-known login or an
# address, a slash between blanks, the password
_LOGIN_NAME = r"(?:\b(?i:admin|administrator|root|sa|ubnt)|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
LOGIN_PAIR = re.compile(
    rf"{_LOGIN_NAME}[ \t]+/[ \t]+"
    r"(?P<quote>[\"'“]?)(?P<value>[^\s\"'”,;]{6,64})"
)
OPEN_LOGIN_PAIR = re.compile(rf"{_LOGIN_NAME}[ \t]+/(?:[ \t]+\S{{0,64}})?\Z")
# "credentials: admin/X", "login with root/X", "creds ann@example.com/X": a login's label, then
# user/password with no blank around the slash (random passwords there: 8 % with symbols,
# 77 % letters and digits found before, by the named-value pattern reading "admin/X" as a key;
# simulated). A path goes on with another "/" and is no login.
_LOGIN_LABEL = (
    r"\b(?i:credentials?|creds|logins?|log[ \t]?in[ \t]+(?:with|as)|sign[ \t]?in[ \t]+with"
    r"|default[ \t]+login)"
)
LABELLED_LOGIN = re.compile(
    rf"{_LOGIN_LABEL}[ \t]*+[:=]?[ \t]*+[\w.+-]{{1,64}}+(?:@[\w-]+(?:\.[\w-]+)+)?/"
    r"(?![^\s/\"']*/)(?P<value>[^\s\"'/,;]{6,64})"
)
OPEN_LABELLED_LOGIN = re.compile(
    rf"{_LOGIN_LABEL}[ \t]*[:=]?[ \t]*[\w.+@-]{{0,64}}(?:/[^\s\"',;]{{0,64}})?\Z"
)
# the labels' spellings in a stream's tail (as written: _OPEN_FORMS reads no lower-cased text)
_LOGIN_LABEL_HINTS = ("cred", "Cred", "CRED", "login", "Login", "LOGIN", "log in", "Log in",
                      "sign in", "Sign in")  # fmt: skip
# SQL: `CREATE USER ... IDENTIFIED BY 'X'` (MySQL, Oracle, ClickHouse's `IDENTIFIED WITH
# sha256_password BY 'X'`), `SET PASSWORD FOR u = 'X'`
SQL_IDENTIFIED = re.compile(
    r"\b(?i:IDENTIFIED(?:[ \t]+WITH[ \t]+\w+)?[ \t]+BY|SET[ \t]+PASSWORD(?:[ \t]+FOR[ \t]+\S+)?"
    r"[ \t]*=)[ \t]+(?P<quote>['\"]?)(?P<value>[^\s'\";]{3,200})(?P=quote)"
)
OPEN_SQL_IDENTIFIED = re.compile(r"\b(?i:IDENTIFIED|SET[ \t]+PASSWORD)\b[^\n;]{0,260}\Z")
_CONNECT = r"\b(?:mysqli_connect|mysql_connect|mysqli_real_connect|new[ \t]+mysqli)[ \t]*\("
CONNECT_CALL = re.compile(rf"{_CONNECT}[ \t]*{_QUOTED}[ \t]*,[ \t]*{_QUOTED}[ \t]*,[ \t]*{_VALUE}")
PDO_CALL = re.compile(
    rf"\bnew[ \t]+PDO[ \t]*\([^,\n]{{1,200}},[ \t]*{_QUOTED}[ \t]*,[ \t]*{_VALUE}"
)
OPEN_CONNECT_CALL = re.compile(rf"(?:{_CONNECT}|\bnew[ \t]+PDO[ \t]*\()[^\n)]{{0,400}}\Z")
SECURE_STRING = re.compile(
    r"\bConvertTo-SecureString\b[^\n|;]{0,80}?(?:-String[ \t]+)?"
    r"(?P<quote>[\"'])(?P<value>[^\"'\n]{3,200})(?P=quote)"
)
OPEN_SECURE_STRING = re.compile(r"\bConvertTo-SecureString\b[^\n|;]{0,300}\Z")
_MECHANISMS = frozenset(("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "XOAUTH2", "NTLM", "GSSAPI"))
AUTH_COMMAND = re.compile(
    r"(?:^|>[ \t]*)AUTH[ \t]+(?:(?P<user>[^\s\"']{1,64})[ \t]+)?(?P<value>[^\s\"']{3,200})"
    r"[ \t]*$",
    re.MULTILINE,
)
OPEN_AUTH_COMMAND = re.compile(r"(?:^|>[ \t]*)AUTH[ \t][^\n]{0,280}\Z", re.MULTILINE)
IPSEC_SECRET = re.compile(rf":[ \t]*(?:PSK|EAP|XAUTH)[ \t]+{_VALUE}")
OPEN_IPSEC_SECRET = re.compile(r":[ \t]*(?:PSK|EAP|XAUTH)[ \t][^\n]{0,220}\Z")
# (a snake_case name ending in it too: a game server's `rcon_password "X"`, `sv_password "X"`)
_QUOTED_NAME = r"(?i:(?<![A-Za-z0-9-])(?:[a-z0-9]{1,20}_){0,3}(?:password|passwd))"
QUOTED_PASSWORD = re.compile(
    rf"{_QUOTED_NAME}[ \t]+(?P<quote>[\"'])(?P<value>[^\s\"']{{4,200}})(?P=quote)"
)
OPEN_QUOTED_PASSWORD = re.compile(rf"{_QUOTED_NAME}[ \t]+[\"'][^\s\"']{{0,200}}\Z")
# A client's login with a key argument (`wandb.login(key="...")`, `hub.login(token="...")`):
# the value must look like a random key.
LOGIN_KEY_CALL = re.compile(rf"\.login\([ \t]*(?:key|api_key|token)[ \t]*=[ \t]*{_VALUE}")
OPEN_LOGIN_KEY_CALL = re.compile(r"\.login\([^\n)]{0,260}\Z")

# Apache's `htpasswd -b [-c ...] FILE USER X` (batch mode takes the password by position;
# with -n there is no file): the last of the arguments
HTPASSWD = re.compile(
    r"\bhtpasswd(?P<flags>(?:[ \t]+-[A-Za-z]+)+)[ \t]+(?:(?P<file>[^\s\"'|;&]+)[ \t]+)?"
    r"(?P<user>[^\s\"'|;&]+)[ \t]+(?P<quote>[\"']?)(?P<value>[^\s\"']{3,200})(?P=quote)"
)
OPEN_HTPASSWD = re.compile(r"\bhtpasswd[ \t]+-[^\n|;&]{0,300}\Z")
# Tasmota's console commands (`Backlog SSID1 x; Password1 X; MqttPassword X; ...`): the value
# runs to the ";" that ends the command (a Wi-Fi passphrase may hold blanks)
TASMOTA_PASSWORD = re.compile(
    r"(?<![\w])(?:Password[1-4]|MqttPassword|WebPassword)[ \t]+"
    r"(?P<value>[^;\n]{1,64}?)[ \t]*(?=;|\n|$)",
    re.MULTILINE,
)
OPEN_TASMOTA_PASSWORD = re.compile(
    r"(?<![\w])(?:Password[1-4]|MqttPassword|WebPassword)[ \t]+[^;\n]{0,64}\Z"
)

# BIND's tools take a TSIG key on the command line: `nsupdate -y [alg:]name:X`, `dig -y ...`
TSIG_OPTION = re.compile(
    r"\b(?:nsupdate|dig)\b[^\n|;&]{0,200}?[ \t]-y[ \t]+(?:hmac-[\w-]+:)?[^\s:]{1,200}:"
    r"(?P<value>[A-Za-z0-9+/]{16,200}={0,2})"
)
OPEN_TSIG_OPTION = re.compile(r"\b(?:nsupdate|dig)\b[^\n|;&]{0,200}?[ \t]-y[^\n|;&]{0,300}\Z")

# (hints one of which the text holds, case as written; the pattern). Each look for a hint costs
# ~0.7 µs a KB here, so the calls' own spellings are looked for, not a lower-cased text's words.
_FORMS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("auth", "Auth"), AUTH_PAIR),
    (("mysql",), CONNECT_CALL),
    (("PDO",), PDO_CALL),
    (("connect", "begin", "addAP", "MCRcon", "Credentials", "Client"), PAIR_CALL),
)
_OPEN_FORMS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("auth", "Auth"), OPEN_AUTH_PAIR),
    (("mysql", "PDO"), OPEN_CONNECT_CALL),
    (("SecureString",), OPEN_SECURE_STRING),
    (("AUTH",), OPEN_AUTH_COMMAND),
    (("PSK", "EAP", "AUTH"), OPEN_IPSEC_SECRET),
    (("assw", "ASSW"), OPEN_QUOTED_PASSWORD),
    (("connect", "begin", "addAP", "MCRcon", "Credentials", "Client"), OPEN_PAIR_CALL),
    (("CONFIG", "ACL", "user "), OPEN_REDIS_SECRET),
    (_CLEAR_HINTS, OPEN_CLEAR_SCHEME),
    ((" /",), OPEN_LOGIN_PAIR),
    (_LOGIN_LABEL_HINTS, OPEN_LABELLED_LOGIN),
    (("IDENTIFIED", "identified", "PASSWORD", "password"), OPEN_SQL_IDENTIFIED),
    ((".login(",), OPEN_LOGIN_KEY_CALL),
    (("htpasswd",), OPEN_HTPASSWD),
    ((" -y",), OPEN_TSIG_OPTION),
    (("Password1", "Password2", "MqttPassword", "WebPassword"), OPEN_TASMOTA_PASSWORD),
)


def _secret(value: str) -> bool:
    """No placeholder or reference (`is_placeholder` reads `$VAR`, `{{ var }}`, `%VAR%`)."""
    return not is_placeholder(value)


def find_calls(text: str, low: str) -> list[Finding]:
    """Passwords these calls and commands take by position (`low` is `text.lower()`)."""
    found: list[Finding] = []
    if "(" in text:  # every call's
        for hints, pattern in _FORMS:
            if any(map(text.__contains__, hints)):
                found.extend(
                    Finding(_pair_kind(m), *m.span("value"))
                    for m in pattern.finditer(text)
                    if _secret(m.group("value"))
                )
    if ".login(" in text:
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in LOGIN_KEY_CALL.finditer(text)
            if key_like(m.group("value")) and _secret(m.group("value"))
        )
    if "SecureString" in text:
        for m in SECURE_STRING.finditer(text):
            if "-asplaintext" in _line(low, m.start()) and _secret(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    upper_auth = "AUTH" in text
    if upper_auth:  # a Redis command
        for m in AUTH_COMMAND.finditer(text):
            if not _MECHANISMS & {m.group("user"), m.group("value")} and _secret(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if upper_auth or "PSK" in text or "EAP" in text:  # ipsec.secrets (XAUTH holds "AUTH")
        for m in IPSEC_SECRET.finditer(text):
            if _secret(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "CONFIG" in text or "ACL" in text or ("user " in text and " >" in text):
        for m in REDIS_SECRET.finditer(text):
            group = next(g for g in ("value", "acl", "file") if m.group(g))
            if _secret(m.group(group)):
                found.append(Finding("PASSWORD", *m.span(group)))
    if "}" in text and any(map(text.__contains__, _CLEAR_HINTS)):
        for m in CLEAR_SCHEME.finditer(text):
            if _secret(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "/" in text and any(map(low.__contains__, ("cred", "login", "log in", "sign in"))):
        for m in LABELLED_LOGIN.finditer(text):
            value = m.group("value").rstrip(".)")
            if password_shaped(value) and _secret(value):
                found.append(Finding("PASSWORD", m.start("value"), m.start("value") + len(value)))
    if " / " in text or " /\t" in text:
        for m in LOGIN_PAIR.finditer(text):
            value = m.group("value").rstrip(".)")  # a password may end in "!"
            if password_shaped(value) and _secret(value):
                found.append(Finding("PASSWORD", m.start("value"), m.start("value") + len(value)))
    if "identified" in low or "set password" in low:
        for m in SQL_IDENTIFIED.finditer(text):
            value = m.group("value")  # bare, it must look like one ("identified by the tag")
            if (m.group("quote") or password_shaped(value)) and _secret(value):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "htpasswd" in text:
        found.extend(_htpasswd(text))
    if ("Backlog" in text or "MqttPassword" in text or "WebPassword" in text) and "assword" in text:
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in TASMOTA_PASSWORD.finditer(text)
            if _secret(m.group("value"))
        )
    if " -y" in text and ("nsupdate" in text or "dig" in text):
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in TSIG_OPTION.finditer(text)
            if key_like(m.group("value"))
        )
    if "passw" in low:
        for m in QUOTED_PASSWORD.finditer(text):
            value = m.group("value")
            if password_shaped(value) and _secret(value):
                found.append(Finding("PASSWORD", *m.span("value")))
    return found


def _htpasswd(text: str) -> list[Finding]:
    found = []
    for m in HTPASSWD.finditer(text):
        flags = m.group("flags")
        if "b" not in flags or ("n" in flags) != (m.group("file") is None):
            continue  # not batch mode (htpasswd asks), or the arguments do not add up
        if _secret(m.group("value")):
            found.append(Finding("PASSWORD", *m.span("value")))
    return found


def _pair_kind(m: re.Match[str]) -> str:
    call = m.group()
    if "Credentials" in call:
        return "AWS_SECRET_KEY"
    return "CREDENTIAL" if call.startswith("Client") else "PASSWORD"  # Twilio's auth token


def _line(low: str, at: int) -> str:
    end = low.find("\n", at)
    return low[low.rfind("\n", 0, at) + 1 : len(low) if end < 0 else end]


_OPEN_REACH = 420
_OPEN_FORM_HINTS = HintGroups(hints for hints, _ in _OPEN_FORMS)


def open_call_start(text: str) -> int | None:
    """Where a call or command that may still be growing at the end of `text` begins (None:
    none is); every form lies on the text's last line."""
    tail_start = max(text.rfind("\n") + 1, len(text) - _OPEN_REACH)
    tail = text[tail_start:]
    starts = [
        tail_start + m.start()
        for hit, (_, pattern) in zip(_OPEN_FORM_HINTS.matched(tail), _OPEN_FORMS, strict=True)
        if hit
        for m in [pattern.search(tail)]
        if m is not None
    ]
    return min(starts) if starts else None
