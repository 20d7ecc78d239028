"""Credentials in developer material's own forms, where no `name = value` pair names them:
command-line options, URLs, and name/value records.

- Options: `--password X`, `--token=X`, `--requirepass X` (any long option whose name ends in a
  credential word), `curl -u user:X` / `--user`, httpie's `-a user:X`, `mysql -pX`,
  `sshpass -p X`, `redis-cli -a X`, registry and cluster logins (`docker login -p X`, `oc`/`az
  login -p X`, `echo X | ... --password-stdin`), `mongosh -p X`, `sqlcmd -P X`.
- URLs: `scheme://user:X@host` with the symbols detect-secrets' basic-auth pattern stops at
  (`!`, `$`, `&`, `*`, ...) or with no user (`redis://:X@host`), Oracle's thin form
  `jdbc:oracle:thin:user/X@host`, and signed URLs' signatures (`sig=`, `X-Amz-Signature=`).
- A .pgpass line: `host:port:database:user:X`; a passphrase, a quoted value with blanks under a
  password's name.
- Records that carry the name in one field and the value in another: JSON (`{"key": "apiKey",
  "value": "X"}`, a HAR or Postman export; `{"name": "DB_PASSWORD", "value": "X"}`, an ECS task
  or a Kubernetes env entry as JSON) and YAML (`- name: AWS_SECRET_ACCESS_KEY` then
  `value: X` on the next line).

Each finding is the value only; the name is what makes it a secret, so a value is judged like a
named one (`credentials.named_value_kind`: placeholders, references and templates are never
findings). Streams: `open_form_start` says from where a form may still be growing, so the
value is held from its name, as `credentials.open_named_start` does for assignments.
"""

from __future__ import annotations

import re

from guards.detectors.credentials import (
    is_placeholder,
    key_like,
    named_value_kind,
    password_shaped,
)
from guards.detectors.literal_scan import HintGroups
from guards.verdict import Finding

# A long option ending in a credential word; its value after "=" or blanks.
_OPTION_WORD = r"(?:password|passwd|pass|pwd|token|secret|api-?key|requirepass|auth-?token)"
# After "=", blanks, or - in an exec-form argument list (`["redis-server", "--requirepass",
# "..."]`) - a quote, a comma and the value's opening quote.
_OPTION_SEP = r"(?:=|[ \t]+|[\"'][ \t]*,[ \t]*)"
LONG_OPTION = re.compile(
    rf"(?<![\w-])--(?P<name>(?:[a-z0-9]+-)*{_OPTION_WORD}){_OPTION_SEP}"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"']{3,200})(?P=quote)(?![^\s\"'\],;)])",
    re.IGNORECASE,
)
OPEN_LONG_OPTION = re.compile(
    rf"(?<![\w-])--(?:[a-z0-9]+-)*{_OPTION_WORD}(?:{_OPTION_SEP}[\"']?[^\s\"']{{0,200}})?\Z",
    re.IGNORECASE,
)
# Short options, by the command that gives them a password: mysql's `-p` takes its value
# without a space (`-p` alone prompts), the others after one. httpie is `http`/`https` followed
# by a blank (a URL's scheme is followed by "://").
_SHORT = (
    r"(?:\b(?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n|;&]{0,160}?(?<=\s)-p(?=[^\s-])"
    r"|\bsshpass[ \t]+-p[ \t]+"
    r"|\bredis-cli\b[^\n|;&]{0,160}?(?<=\s)-a[ \t]+"
    r"|\bschtasks\b[^\n|&]{0,300}?(?<=\s)/rp[ \t]+"
    r"|\bcmdkey\b[^\n|&]{0,200}?(?<=\s)/pass:"
    r"|\bldap(?:search|modify|add|delete|whoami|passwd|compare|modrdn)\b"
    r"[^\n|;&]{0,200}?(?<=\s)-w[ \t]+"
    r"|\b(?:curl|wget)\b(?:[^\n|;&\\]|\\\n?){0,300}?(?<=\s)(?:-u|--user)[ \t]+[\"']?[^\s:\"']+:"
    r"|\bhttps?[ \t][^\n|;&]{0,200}?(?<=\s)(?:-a|--auth)[ \t]+[\"']?[^\s:\"']+:"
    # registry and cluster logins (`docker login -u bob -p X`, `oc login`, `az login`),
    # MongoDB's shells and tools, SQL Server's `sqlcmd -P X`, Pi-hole's `pihole -a -p X`
    r"|\b(?:docker|podman|buildah|skopeo|nerdctl|helm)\b[^\n|;&]{0,160}?\blogin\b"
    r"[^\n|;&]{0,200}?(?<=\s)-p[ \t]+"
    r"|\b(?:oc|az)[ \t]+login\b[^\n|;&]{0,200}?(?<=\s)-p[ \t]+"
    r"|\bmongo(?:sh|dump|restore|export|import|stat|top)?\b[^\n|;&]{0,200}?(?<=\s)-p[ \t]+"
    r"|\b(?:sqlcmd|bcp|osql)\b[^\n|;&]{0,200}?(?<=\s)-P[ \t]*"
    r"|\bpihole[ \t]+-a[ \t]+-p[ \t]+"
    # Cassandra's cqlsh, MySQL Shell and Minecraft's mcrcon take `-p X`, Mosquitto's
    # clients `-P X` (their `-p` is a port)
    r"|\b(?:cqlsh|mysqlsh|mcrcon)\b[^\n|;&]{0,200}?(?<=\s)-p[ \t]+"
    r"|\bmosquitto_(?:pub|sub|rr)\b[^\n|;&]{0,200}?(?<=\s)-P[ \t]+)"
)
SHORT_OPTION = re.compile(
    rf"{_SHORT}(?P<quote>[\"']?)(?P<value>[^\s\"']{{3,200}})(?![^\s\"'\],;)])"
)
# The command is the evidence, so a stream holds its line from the command on until the line
# (or the command: "|", ";", "&") ends.
OPEN_SHORT_OPTION = re.compile(
    r"(?:\b(?:mysql|mysqldump|mysqladmin|mariadb|redis-cli|curl|wget|ldap[a-z]{3,7}|schtasks"
    r"|cmdkey|docker|podman|buildah|skopeo|nerdctl|helm|mongo(?:sh|dump|restore|export|import"
    r"|stat|top)?|sqlcmd|bcp|osql|pihole|cqlsh|mysqlsh|mcrcon|mosquitto_(?:pub|sub|rr))\b"
    r"|\b(?:oc|az)[ \t]+login\b"
    r"|\bsshpass[ \t]|\bhttps?[ \t])(?:[^\n|;&\\]|\\\n?){0,420}\Z"  # "\" + newline: one line
)
# ("login": a text naming one costs one more scan where a short option follows a blank, ~60
# µs a KB of such prose, measured here)
_SHORT_HINTS = ("mysql", "mariadb", "sshpass", "redis-cli", "curl", "wget", "http", "ldap",
                "schtasks", "cmdkey", "login", "mongo", "sqlcmd", "bcp", "osql",
                "pihole", "cqlsh", "mcrcon", "mosquitto_")  # fmt: skip
_OPEN_SHORT_HINTS = (*_SHORT_HINTS, "docker", "podman", "buildah", "skopeo", "nerdctl", "helm")

# A password echoed into a login that reads it from its input (`echo 'X' | docker login -u bob
# --password-stdin`): one word, quoted or not, before the pipe.
ECHO_STDIN = re.compile(
    r"\b(?:echo|printf)[ \t]+(?:-n[ \t]+|'%s'[ \t]+|\"%s\"[ \t]+)?"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"'|]{3,200})(?P=quote)[ \t]*\|"
    r"[^\n|]{0,200}?--password-stdin\b"
)
# the stream holds a one-word echo (and what is piped on) until its line ends
OPEN_ECHO_STDIN = re.compile(
    r"\b(?:echo|printf)[ \t]+(?:-n[ \t]+|'%s'[ \t]+|\"%s\"[ \t]+)?[\"']?[^\s\"'|]{0,200}[\"']?"
    r"(?:[ \t]*\|[^\n]{0,260})?\Z"
)

# URL credentials: a user (maybe empty), ":", the password up to the "@" before the host. A
# password pasted into a DSN unescaped may hold "@", "?", "#" or brackets: the password ends at
# the first "@" after which a host ends the authority (a port, a path, a query, a blank, a
# quote or the end), not at the first "@" (`postgres://app:nd8f@LT6s^91@db:5432`: with the old
# pattern 32 % of random 10-16 character passwords with symbols were missed or cut, simulated).
# (IPv6 in brackets or, as some DSNs write it, without)
_URL_HOST = (
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|(?:[0-9A-Fa-f]{0,4}:){2,8}[0-9A-Fa-f]{0,4}"
    r"|[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*)"
)
# The user may be a mail address written unescaped (`smtp://alerts@corp.example:X@smtp.corp.
# example:587`): once the old e-mail pattern masked `X@smtp.corp.example` by chance; read
# right, the password was left (a row of r15's never-read half got worse, found by offsets).
_URL_USER = (
    r"(?:[^:/?#\[\]@\s\"'<>]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
    r"|[^:/?#\[\]@\s\"'<>]*)"
)
URL_PASSWORD = re.compile(
    rf"[A-Za-z][A-Za-z0-9+.-]{{1,20}}://{_URL_USER}:(?P<value>[^/\s\"'<>]{{1,200}}?)@"
    rf"(?={_URL_HOST}(?::\d{{1,5}})?\.?(?:[/?#\s\"'<>,;)\]}}]|\Z))"
)
# held until the authority can no longer grow: a "/" or a blank after the password
OPEN_URL_PASSWORD = re.compile(r"://[^:/?#\[\]@\s\"'<>]*(?:@[A-Za-z0-9.-]*)?:[^/\s\"'<>]{0,200}\Z")
ORACLE_THIN = re.compile(r"\boracle:thin:[^/\s@:\"']+/(?P<value>[^@\s\"']{1,200})@")
OPEN_ORACLE_THIN = re.compile(r"\boracle:thin:[^/\s@:\"']*(?:/[^@\s\"']{0,200})?\Z")
# Oracle's command-line logins, `sqlplus user/"pw"@//host:1521/SVC`, `expdp user/pw@db`,
# `sqlldr userid=user/pw@db`: the password between "/" and "@".
_ORACLE_HINTS = ("sqlplus", "rman", "expdp", "impdp", "sqlldr", "sqlcl", "exp ", "imp ", "dgmgrl",
                 "userid=")  # fmt: skip
_ORACLE_TOOLS = r"\b(?:sqlplus|rman|expdp|impdp|sqlldr|sqlcl|exp|imp|dgmgrl)"
ORACLE_LOGIN = re.compile(
    rf"(?:{_ORACLE_TOOLS}(?:[ \t]+-\w+)*[ \t]+|\buserid=)[\w$#.]{{1,64}}/"
    r"(?:\"(?P<quoted>[^\"\n]{1,200})\"|(?P<value>[^\s@/\"]{1,200}))@"
)
OPEN_ORACLE_LOGIN = re.compile(
    rf"(?:{_ORACLE_TOOLS}(?:[ \t]+-\w+)*[ \t]+|\buserid=)[\w$#.]{{0,64}}(?:/[^\s@\n]{{0,202}})?\Z"
)

# A .pgpass line, hostname:port:database:username:password (port a number or "*"; "\:" is an
# escaped colon inside a field).
_PGPASS_FIELD = r"(?:[^:\s\\]|\\.)+"
PGPASS_LINE = re.compile(
    rf"^{_PGPASS_FIELD}:(?:\d{{1,5}}|\*):{_PGPASS_FIELD}:{_PGPASS_FIELD}:(?P<value>\S{{1,200}})$",
    re.MULTILINE,
)
OPEN_PGPASS_LINE = re.compile(
    rf"^{_PGPASS_FIELD}:(?:\d{{1,5}}|\*):{_PGPASS_FIELD}:{_PGPASS_FIELD}:\S{{0,200}}\Z",
    re.MULTILINE,
)
# One dash: Java tools, game servers, PowerShell (`-password "X"`, `-Password X`).
# (after a blank: "an N-token window" is prose). Matched where `_DASH_WORDS` stand: searched
# for over a text, the pattern cost ~38 µs a KB (measured here).
DASH_OPTION = re.compile(
    r"(?<![^\s])-(?P<name>password|passwd|pass|pw|pwd|secret|token"
    r"|(?:src|dest)?(?:store|key)pass)[ \t]+"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"']{3,200})(?P=quote)(?![^\s\"'\],;)])",
    re.IGNORECASE,
)
OPEN_DASH_OPTION = re.compile(
    r"(?<![^\s])-(?:password|passwd|pass|pw|pwd|secret|token|(?:src|dest)?(?:store|key)pass)"
    r"(?:[ \t]+[\"']?[^\s\"']{0,200})?\Z",
    re.IGNORECASE,
)
# Network gear: Cisco IOS `username x password 0 X`, `key 7 X` (0: in clear, 7: a reversible
# encoding; 5, 8 and 9 are hashes, written after "$": placeholders, never findings), FortiOS
# `set psksecret X` / `set passwd X`, EdgeOS / VyOS `pre-shared-secret X`, Juniper
# `pre-shared-key ascii-text "X"`, SNMP communities. Without the type digit the value must look
# like a password ("the secret sauce" is prose).
NETWORK_SECRET = re.compile(
    r"(?:(?P<typed>\b(?:password|secret|key)[ \t]+[07][ \t]+"
    r"|\bset-key[ \t]+(?:ascii|hex)[ \t]+[07][ \t]+)"  # a Cisco WLAN's PSK
    r"|\b(?:set[ \t]+)?(?:psksecret|pre-shared-secret|pre-shared-key(?:[ \t]+ascii-text)?|passwd)"
    r"[ \t]+|\b(?:snmp-server|snmp)[ \t]+community[ \t]+)"  # IOS; Junos `set snmp community`
    r"(?P<quote>[\"']?)(?P<value>[^\s\"']{3,200})(?P=quote)(?![^\s])"
)
OPEN_NETWORK_SECRET = re.compile(
    r"(?:\b(?:password|secret|key)[ \t]+[07]?|\b(?:psksecret|pre-shared-secret|passwd"
    r"|pre-shared-key(?:[ \t]+ascii-text)?)|\b(?:snmp-server|snmp)[ \t]+community"
    r"|\bset-key(?:[ \t]+(?:ascii|hex))?(?:[ \t]+[07])?)"
    r"(?:[ \t]+[\"']?[^\s\"']{0,200})?\Z"
)
_DASH_WORDS = ("-pass", "-pw", "-secret", "-token", "storepass", "keypass")
# Matched where its words stand (`_NETWORK_WORDS`, the typed form after " 0 " or " 7 "):
# searched for over a text, the pattern cost ~146 µs a KB (measured here).
_NETWORK_WORDS = ("psksecret", "pre-shared-", "passwd", "community", "set-key")
# `aws configure` asking for the secret key; `az storage account keys list` printing keys
AWS_CONFIGURE = re.compile(
    r"AWS Secret Access Key \[[^\]\n]{0,40}\]:[ \t]*(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
)
OPEN_AWS_CONFIGURE = re.compile(r"AWS Secret Access Key(?: \[[^\]\n]{0,40}\]?:?[ \t]*\S{0,40})?\Z")
AZURE_KEY_ROW = re.compile(
    r"\b(?:key[12]|primaryKey|secondaryKey|primary_key|secondary_key)\b[^\n]{0,60}?"
    r"(?<![A-Za-z0-9+/])(?P<value>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])"
)
OPEN_AZURE_KEY_ROW = re.compile(
    r"\b(?:key[12]|primaryKey|secondaryKey|primary_key|secondary_key)\b[^\n]{0,150}\Z"
)
# XML elements named as credentials, their text the value: `<password>X</password>`,
# `<pre-shared-key>X</pre-shared-key>`, unattend.xml's `<Password><Value>X</Value>`; and
# KeePass's records, `<Key>Password</Key><Value>X</Value>`, and property lists' (Info.plist),
# `<key>Password</key><string>X</string>`.
_XML_NAME = r"(?:[A-Za-z][\w.:-]{0,60}?)?(?i:pass(?:word|wd|phrase)?|pwd|secret|key|token|psk)"
XML_ELEMENT = re.compile(
    rf"<(?P<name>{_XML_NAME})(?:[ \t][^<>]{{0,100}})?>[ \t\r\n]*"
    r"(?:<Value(?:[ \t][^<>]{0,100})?>)?(?P<value>[^<>\s](?:[^<>\n]{0,198}[^<>\s])?)</"
)
XML_KEY_VALUE = re.compile(
    r"<([Kk]ey)>(?P<name>[^<>\n]{1,60})</\1>[ \t\r\n]*<(Value|string)(?:[ \t][^<>]{0,100})?>"
    r"(?P<value>[^<>\s](?:[^<>\n]{0,198}[^<>\s])?)</\3>"
)
OPEN_XML_ELEMENT = re.compile(
    rf"(?:<{_XML_NAME}(?:[ \t][^<>]{{0,100}})?>[ \t\r\n]*(?:<Value[^<>]{{0,100}}>?)?"
    r"|<[Kk]ey>[^<>\n]{1,60}</[Kk]ey>[ \t\r\n]*(?:<(?:Value|string)[^<>]{0,100}>?)?)"
    r"[^<\n]{0,200}(?:</?[\w.:-]{0,60})?\Z"  # until its closing tag is whole
)

# An AWS access key's secret written after it (a CSV of keys, a sentence, a pasted `aws
# configure` answer): 40 characters of base64 within a line or two of an `AKIA`/`ASIA` key ID.
AWS_PAIR = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b[^\n]{0,80}?\n?[^\n]{0,80}?(?<![A-Za-z0-9/+])"
    r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
OPEN_AWS_PAIR = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b[^\n]{0,80}(?:\n[^\n]{0,80})?\Z")


def _aws_secret_like(value: str) -> bool:
    """Random base64 of 30 bytes: a digit and both cases (not a 40-letter word or hex)."""
    return (
        any(c.isdigit() for c in value)
        and value.lower() != value
        and value.upper() != value
        and not all(c in "0123456789abcdefABCDEF" for c in value)
    )


# C's `#define WIFI_PASSWORD "X"` (Arduino, ESP-IDF sketches)
DEFINE = re.compile(
    r"#[ \t]*define[ \t]+(?P<name>[A-Za-z_]\w{0,60})[ \t]+(?P<quote>\")(?P<value>[^\"\n]{3,200})\""
)
OPEN_DEFINE = re.compile(r"#[ \t]*define[ \t]+[A-Za-z_]\w{0,60}[ \t]+\"[^\"\n]{0,200}\Z")

# Mail relays' credential files: Postfix's sasl_passwd (`[smtp.example.com]:587 user:X`) and
# Exim's passwd.client (`*.example.org:user@example.org:X`, a wildcard host or an address as
# the user). The host must be a domain name and the value look like a password (a letter and
# a digit or a symbol), so that a listing (`setup.cfg flake8:max`) or a log position
# (`main.py:42:E501`) is no finding.
_RELAY_HOST = r"(?P<host>\[[\w.-]+\.[A-Za-z]{2,}\]|[\w*.-]+\.[A-Za-z]{2,})(?::\d{1,5})?"
RELAY_LINE = re.compile(
    rf"^[ \t]*{_RELAY_HOST}(?P<sep>[ \t]+|:)(?P<user>[^\s:]+):(?P<value>\S{{1,200}})[ \t]*$",
    re.MULTILINE,
)
# held from the host once a blank or ":" follows it: a stream's next check reads from the
# last blank, so the host must be held before the user is written
OPEN_RELAY_LINE = re.compile(
    rf"^[ \t]*{_RELAY_HOST}(?:[ \t]+|:)(?:[^\s:]+(?::\S{{0,200}})?)?\Z", re.MULTILINE
)


def _relay_login(m: re.Match[str]) -> bool:
    exim = m.group("sep") == ":"
    if exim and not (m.group("host").startswith("*.") or "@" in m.group("user")):
        return False
    value = m.group("value")
    return password_shaped(value) and _url_password(value)


# A signed URL's signature: whoever holds the URL holds the access (an Azure SAS `sig=`, AWS
# and Google presigned URLs' `X-Amz-Signature=` / `X-Goog-Signature=`).
URL_SIGNATURE = re.compile(
    r"[?&](?:sig|X-Amz-Signature|X-Goog-Signature)=(?P<value>[A-Za-z0-9%+/=_-]{20,})"
)
OPEN_URL_SIGNATURE = re.compile(
    r"[?&](?:sig|X-Amz-Signature|X-Goog-Signature)(?:=[A-Za-z0-9%+/=_-]{0,600})?\Z"
)
# An API's key in a URL's query, `?key=` alone (Steam's Web API, Google's, many REST APIs),
# when the value looks random (`key_like`: an object's key, `?key=uploads/a.png`, does not)
URL_QUERY_KEY = re.compile(r"[?&](?:key|Key|KEY)=(?P<value>[A-Za-z0-9_~.-]{16,200})(?![\w%+/=])")
OPEN_URL_QUERY_KEY = re.compile(r"[?&](?:key|Key|KEY)(?:=[A-Za-z0-9_~.-]{0,200})?\Z")
# A conda channel's token in its path (anaconda.org's and private channels' `/t/<token>/`)
CONDA_TOKEN = re.compile(r"://[^/\s]*conda[^/\s]*/t/(?P<value>[A-Za-z0-9_-]{16,200})(?=/)")
OPEN_CONDA_TOKEN = re.compile(r"://[^/\s]*conda[^/\s]*(?:/t(?:/[A-Za-z0-9_-]{0,200})?)?\Z")

# Name/value records. The name is a credential's name as in an assignment (checked with the
# same words: `credentials.named_value_kind`).
# The field names may carry a prefix: CloudFormation's `{"ParameterKey": "DBMasterPassword",
# "ParameterValue": "X"}`, `OptionName` / `OptionValue`, `Name` / `Value`; or be a label or a
# field (1Password's CLI: `{"id": "password", "label": "password", "value": "X"}`). Not "id":
# a stream holds every object from its name field on, and LLM output is full of "id" fields.
_FIELD_NAME = r"[\"'](?i:[a-z]{0,20}(?:key|name|label|field))[\"'][ \t]*:[ \t]*"
JSON_RECORD = re.compile(
    rf"{_FIELD_NAME}[\"'](?P<name>[A-Za-z0-9_.-]{{1,60}})[\"'][ \t]*,[ \t]*\r?\n?[ \t]*"
    r"[\"'](?i:[a-z]{0,20}value)[\"'][ \t]*:[ \t]*(?P<quote>[\"'])(?P<value>[^\s\"']{4,200})"
    r"(?P=quote)"
)
# The record's name field is the evidence: a stream holds from it while its object is open.
OPEN_JSON_RECORD = re.compile(rf"{_FIELD_NAME}[^{{}}]{{0,300}}\Z")
YAML_RECORD = re.compile(
    r"\b(?:name|Name|ParameterKey):[ \t]*[\"']?(?P<name>[A-Za-z0-9_.-]{1,60})[\"']?[ \t]*\r?\n"
    r"[ \t]*(?:value|Value|ParameterValue):[ \t]*"
    r"(?P<quote>[\"']?)(?P<value>[^\s\"']{4,200})(?P=quote)(?![^\s\"'])"
)
# ... and from a YAML `name:` while its line or the next one is being written.
OPEN_YAML_RECORD = re.compile(r"\b(?:name|Name|ParameterKey):[^\n]{0,80}(?:\n[^\n]{0,220})?\Z")
# JSON objects that hold a named value's "value" field: Terraform state and plan output
# (`"db_password": {"sensitive": true, "type": "string", "value": "X"}`), ARM parameter files
# (`"adminPassword": { "value": "X" }`).
JSON_VALUE_OBJECT = re.compile(
    r"[\"'](?P<name>[A-Za-z0-9_.-]{1,60})[\"'][ \t]*:[ \t]*\{[^{}]{0,300}?"
    r"[\"']value[\"'][ \t]*:[ \t]*(?P<quote>[\"'])(?P<value>[^\s\"']{4,200})(?P=quote)"
)
# held from a credential's name while its object is open
OPEN_JSON_VALUE_OBJECT = re.compile(
    r"[\"'][A-Za-z0-9_.-]{0,50}(?i:pass(?:word|wd)?|pwd|secret|token|key)[\"'][ \t]*:[ \t]*"
    r"\{[^{}]{0,300}\Z"
)
# XML elements that carry a name and a value as attributes: .NET appSettings and NuGet
# (`<add key="ClearTextPassword" value="X" />`), Spring beans (`<property name="password"
# value="X"/>`), Ant and Maven parameters.
XML_RECORD = re.compile(
    r"<[A-Za-z][\w:.-]{0,40}[ \t\n][^<>]{0,200}?\b(?:key|name)[ \t]*=[ \t]*[\"']"
    r"(?P<name>[A-Za-z0-9_.:-]{1,60})[\"'][^<>]{0,200}?\bvalue[ \t]*=[ \t]*"
    r"(?P<quote>[\"'])(?P<value>[^\s\"'<>]{4,200})(?P=quote)"
)
# held from its "<" while the element is open: its `name="password"` arrives in pieces, and a
# stream that released `<param ` before "name" came never saw the element again (r16's read
# half, one character per chunk: `value="Ridge!` left before its value ended)
OPEN_XML_RECORD = re.compile(r"<[A-Za-z][\w:.-]{0,40}(?:[ \t\n][^<>]{0,420})?\Z")
_RECORD_HINT = "value"

# A Wi-Fi network as a QR code holds it (`WIFI:T:WPA;S:Guest;P:X;;`; "\;" escapes a ";").
WIFI_QR = re.compile(r"\bWIFI:(?:[A-Z]:(?:\\.|[^;\\\n])*;)*?P:(?P<value>(?:\\.|[^;\\\n]){1,200});")
OPEN_WIFI_QR = re.compile(r"\bWIFI:(?:\\.|[^\\\n])*\Z")
# Windows' `netsh wlan show profile ... key=clear` prints the passphrase as "Key Content".
NETSH_KEY = re.compile(r"(?m)^[ \t]*Key Content[ \t]*:[ \t]*(?P<value>[^\n]*?\S)[ \t]*\r?$")
OPEN_NETSH_KEY = re.compile(r"(?m)^[ \t]*Key Cont?e?n?t?[^\n]*\Z")
# A Python or IPython prompt that prints a credential's variable (`>>> settings.SECRET_KEY`,
# `In [3]: os.environ["DB_PASSWORD"]`): its value is the quoted line below.
REPL_ECHO = re.compile(
    r"(?m)^(?:>>>|In \[\d+\]:)[ \t]*(?P<name>[\w.\[\]\"'()]{1,80}?)[ \t]*\r?\n"
    r"(?:Out\[\d+\]:[ \t]*)?(?P<quote>[\"'])(?P<value>[^\"'\n]{4,200})(?P=quote)[ \t]*\r?$"
)
OPEN_REPL_ECHO = re.compile(r"(?m)^(?:>>>|In \[\d+\]:)[^\n]{0,90}(?:\n[^\n]{0,220})?\Z")
_REPL_NAME = re.compile(r"[A-Za-z_]\w*")
# A bare `key = X` on a config line of its own under an INI section (rclone's `[remote]`): only
# a value that looks like a random key (`credentials.key_like`; `key = name` is everywhere in
# configs, and `key = kFp8StaticTensorSym` in a Python class).
BARE_KEY_LINE = re.compile(r"(?m)^[ \t]*key[ \t]*=[ \t]*(?P<value>[^\s\"'#;]{16,200})[ \t]*\r?$")
INI_SECTION = re.compile(r"(?m)^[ \t]*\[[^\]\n]{1,80}\][ \t]*\r?$")
OPEN_BARE_KEY_LINE = re.compile(r"(?m)^[ \t]*key[ \t]*=[ \t]*[^\s\"'#;]{0,200}\Z")
# Authorization schemes other than Bearer and Basic (credentials.py, encoded_credentials.py):
# Splunk's HEC, Django REST's "Token", Okta's "SSWS", Opsgenie's "GenieKey", "Api-Key".
AUTH_SCHEME = re.compile(
    r"(?i:\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?"
    # a vendor's own scheme: Klaviyo's "Klaviyo-API-Key pk_..."
    r"(?:[a-z0-9]{1,20}-)?(?:splunk|token|ssws|geniekey|api-?key|key|apikey))[ \t]+"
    r"(?P<value>[\w.~+/=-]{16,200})"
)
OPEN_AUTH_SCHEME = re.compile(
    r"(?i:\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?[a-z0-9-]{0,30}"
    r"(?:[ \t]+[\w.~+/=-]{0,200})?)\Z"
)

# Web3 tooling: an RPC provider's key in its URL's path (Alchemy's `/v2/X`, Infura's `/v3/X`,
# QuickNode's `/X/`), and a wallet's private key in a Hardhat or Foundry config's `accounts:
# ["0x..."]` (64 hex digits; a bare one is a transaction's or a block's hash, and stays)
RPC_KEY_URL = re.compile(
    r"://[\w.-]*(?:alchemy\.com|alchemyapi\.io)/v2/(?P<alchemy>[A-Za-z0-9_-]{16,200})"
    r"|://[\w.-]*infura\.io/v3/(?P<infura>[0-9a-fA-F]{32})"
    r"|://[\w.-]*quiknode\.pro/(?P<quicknode>[0-9a-fA-F]{32,64})"
)
WALLET_ACCOUNTS = re.compile(
    r"\baccounts[\"']?[ \t]*[:=][ \t]*\[[ \t\n]*(?P<quote>[\"'`])(?P<value>(?:0x)?[0-9a-fA-F]{64})"
    r"(?P=quote)"
)
OPEN_WALLET_ACCOUNTS = re.compile(r"\baccounts[\"']?[ \t]*[:=][ \t]*\[[^\]]{0,200}\Z")

# Asterisk's SIP registration: `register => user:X@host/ext` (no "://": the URL form misses it)
SIP_REGISTER = re.compile(
    r"\bregister[ \t]*=>[ \t]*[^:\s@]{1,64}:(?P<value>[^\s@:]{3,200})(?::[^\s@:]{1,64})?@"
)
OPEN_SIP_REGISTER = re.compile(r"\bregister[ \t]*=>[^\n]{0,300}\Z")

# A passphrase: a quoted value with blanks under a password's name (`RESTIC_PASSWORD='cobalt
# tram ledger $unrise 71'`, `wifi_password: "fern gully 1987 kettle"`), which the named form
# (no blank in a value) leaves; two to eight words, judged like a named value.
_PHRASE_NAME = r"(?P<name>[A-Za-z_][\w.-]{0,60}?(?i:pass(?:word|wd|phrase)?|pwd|psk)\d{0,2})"
PASSPHRASE = re.compile(
    rf"{_PHRASE_NAME}[\"']?[ \t]*(?:=|:)[ \t]*(?P<quote>[\"'])"
    r"(?P<value>[^\s\"']{1,64}(?:[ \t][^\s\"']{1,64}){1,7})(?P=quote)"
)
OPEN_PASSPHRASE = re.compile(
    r"(?i:pass(?:word|wd|phrase)?|pwd|psk)\d{0,2}[\"']?[ \t]*(?:=|:)[ \t]*[\"'][^\"'\n]{0,200}\Z"
)

_OPEN_FORMS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("--",), OPEN_LONG_OPTION),
    (_OPEN_SHORT_HINTS, OPEN_SHORT_OPTION),
    (("echo", "printf"), OPEN_ECHO_STDIN),
    (("://",), OPEN_URL_PASSWORD),
    (("oracle:thin:",), OPEN_ORACLE_THIN),
    (
        (
            "sqlplus",
            "rman",
            "expdp",
            "impdp",
            "sqlldr",
            "sqlcl",
            "exp ",
            "imp ",
            "dgmgrl",
            "userid=",
        ),
        OPEN_ORACLE_LOGIN,
    ),
    (("sig", "Signature"), OPEN_URL_SIGNATURE),
    (("?key", "&key", "?Key", "&Key", "?KEY", "&KEY"), OPEN_URL_QUERY_KEY),
    (("conda",), OPEN_CONDA_TOKEN),
    (
        ("key", "name", "Key", "Name", "label", "Label", "field", "Field"),
        OPEN_JSON_RECORD,
    ),
    (("name:", "Name:", "ParameterKey:"), OPEN_YAML_RECORD),
    (("{",), OPEN_JSON_VALUE_OBJECT),
    (("<",), OPEN_XML_ELEMENT),
    (("define",), OPEN_DEFINE),
    (("AKIA", "ASIA"), OPEN_AWS_PAIR),
    (("<",), OPEN_XML_RECORD),
    (("WIFI:",), OPEN_WIFI_QR),
    (("Key Cont",), OPEN_NETSH_KEY),
    ((">>>", "In ["), OPEN_REPL_ECHO),
    (("key",), OPEN_BARE_KEY_LINE),
    (("uthorization",), OPEN_AUTH_SCHEME),
    (("ass", "ASS", "pwd", "PWD", "psk", "PSK"), OPEN_PASSPHRASE),
    (("register",), OPEN_SIP_REGISTER),
    (("accounts",), OPEN_WALLET_ACCOUNTS),
)


def find_forms(text: str, low: str, present: list[str]) -> list[Finding]:
    """Values these forms name as credentials (`low` is `text.lower()`, `present` the
    credential words it holds: `credentials.credential_words`)."""
    found: list[Finding] = []
    if "--" in text:
        for m in LONG_OPTION.finditer(text):
            name = m.group("name").replace("-", "_")
            if name.lower().endswith("requirepass"):  # redis-server's password
                name = "password"
            kind = named_value_kind(name, m.group("value"), quoted=bool(m.group("quote")))
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    # every short option follows a blank: a cheap test before the commands' names (~5 µs a KB)
    if (" -" in text or "\t-" in text or " /" in text) and any(map(low.__contains__, _SHORT_HINTS)):
        for m in SHORT_OPTION.finditer(text):
            kind = named_value_kind("password", m.group("value"), quoted=bool(m.group("quote")))
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    if "password-stdin" in low:
        for m in ECHO_STDIN.finditer(text):
            kind = named_value_kind("password", m.group("value"), quoted=bool(m.group("quote")))
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    if "://" in text:
        for m in URL_PASSWORD.finditer(text):
            if _url_password(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "oracle:thin:" in low:
        for m in ORACLE_THIN.finditer(text):
            if _url_password(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "@" in text and "/" in text and any(map(low.__contains__, _ORACLE_HINTS)):
        for m in ORACLE_LOGIN.finditer(text):
            group = "quoted" if m.group("quoted") else "value"
            if _url_password(m.group(group)):
                found.append(Finding("PASSWORD", *m.span(group)))
    if text.count(":") >= 4:
        for m in PGPASS_LINE.finditer(text):
            if _url_password(m.group("value")):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "-" in text:
        for m in _matches_at(text, low, _DASH_WORDS, DASH_OPTION, 5):  # "-deststorepass"
            name = m.group("name").lower()
            kind = named_value_kind(name, m.group("value"), quoted=bool(m.group("quote")))
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    typed = [w for w in (" 0 ", " 7 ") if w in text]
    for m in _matches_at(text, low, typed, NETWORK_SECRET, 8) + _matches_at(
        text, low, _NETWORK_WORDS, NETWORK_SECRET, 16
    ):
        value = m.group("value")
        if (m.group("typed") or password_shaped(value)) and _url_password(value):
            found.append(Finding("PASSWORD", *m.span("value")))
    if "Secret Access Key [" in text:
        found.extend(
            Finding("AWS_SECRET_KEY", *m.span("value")) for m in AWS_CONFIGURE.finditer(text)
        )
    if "==" in text:
        found.extend(Finding("CREDENTIAL", *m.span("value")) for m in AZURE_KEY_ROW.finditer(text))
    if "AKIA" in text or "ASIA" in text:
        found.extend(
            Finding("AWS_SECRET_KEY", *m.span("value"))
            for m in AWS_PAIR.finditer(text)
            if _aws_secret_like(m.group("value"))
        )
    if "define" in text:
        for m in DEFINE.finditer(text):
            kind = named_value_kind(m.group("name"), m.group("value"), quoted=True)
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    if "</" in text:
        for pattern in (XML_ELEMENT, XML_KEY_VALUE):
            for m in pattern.finditer(text):
                kind = named_value_kind(m.group("name"), m.group("value"), quoted=True)
                if kind is not None:
                    found.append(Finding(kind, *m.span("value")))
    # a relay file's user is an address, or its host is bracketed with a port (Postfix)
    if ":" in text and ("@" in text or "]:" in text):
        for m in RELAY_LINE.finditer(text):
            if _relay_login(m):
                found.append(Finding("PASSWORD", *m.span("value")))
    if "sig=" in text or "Signature=" in text:
        found.extend(Finding("CREDENTIAL", *m.span("value")) for m in URL_SIGNATURE.finditer(text))
    for key_pattern, gate in (
        (CONDA_TOKEN, "conda" in low and "/t/" in text),
        (URL_QUERY_KEY, "key=" in low),
    ):
        if gate:
            found.extend(_random_values(key_pattern, text))
    if "WIFI:" in text:
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in WIFI_QR.finditer(text)
            if not is_placeholder(m.group("value"))
        )
    keys = "key" in present
    if keys and "Key Content" in text:
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in NETSH_KEY.finditer(text)
            if m.group("value") not in ("Absent", "Present")
            and not is_placeholder(m.group("value"))
        )
    if ">>>" in text or "In [" in text:
        for m in REPL_ECHO.finditer(text):
            names = _REPL_NAME.findall(m.group("name"))
            if not names or names[-1] == "pwd":  # IPython's magic: the working directory
                continue
            kind = named_value_kind(names[-1], m.group("value"), quoted=True)
            if kind is not None:
                found.append(Finding(kind, *m.span("value")))
    section = INI_SECTION.search(text) if keys and "key" in text else None
    if section is not None:
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in BARE_KEY_LINE.finditer(text, section.end())
            if key_like(m.group("value"))
        )
    if "uthorization" in low:
        found.extend(
            Finding("CREDENTIAL", *m.span("value"))
            for m in AUTH_SCHEME.finditer(text)
            if key_like(m.group("value"))
        )
    if "://" in text and ("alchemy" in low or "infura.io" in low or "quiknode" in low):
        for m in RPC_KEY_URL.finditer(text):
            group = next(g for g in ("alchemy", "infura", "quicknode") if m.group(g))
            if key_like(m.group(group)) or group != "alchemy":
                found.append(Finding("CREDENTIAL", *m.span(group)))
    if "accounts" in text:
        found.extend(
            Finding("CREDENTIAL", *m.span("value")) for m in WALLET_ACCOUNTS.finditer(text)
        )
    if "register" in text and "=>" in text:
        found.extend(
            Finding("PASSWORD", *m.span("value"))
            for m in SIP_REGISTER.finditer(text)
            if _url_password(m.group("value"))
        )
    if "pass" in low or "pwd" in low or "psk" in low:
        for m in PASSPHRASE.finditer(text):
            kind = named_value_kind(m.group("name"), m.group("value"), quoted=True)
            if kind is not None and _passphrase(m.group("value")):
                found.append(Finding(kind, *m.span("value")))
    if _RECORD_HINT in low:
        for pattern in (JSON_RECORD, YAML_RECORD, JSON_VALUE_OBJECT, XML_RECORD):
            for m in pattern.finditer(text):
                kind = named_value_kind(m.group("name"), m.group("value"), quoted=True)
                if kind is not None:
                    found.append(Finding(kind, *m.span("value")))
    return found


def _matches_at(
    text: str, low: str, words: list[str] | tuple[str, ...], pattern: re.Pattern[str], before: int
) -> list[re.Match[str]]:
    """`pattern` matched where each of `words` stands in `low` (from up to `before` characters
    ahead of it: "password" before " 0 ", "snmp-server " before "community"), not searched
    for."""
    matches: dict[int, re.Match[str]] = {}
    for word in words:
        j = low.find(word)
        while j != -1:
            for pos in range(max(j - before, 0), j + 1):
                m = pattern.match(text, pos)
                if m is not None:
                    matches[m.start()] = m
                    break
            j = low.find(word, j + 1)
    return [matches[k] for k in sorted(matches)]


# Words a note in a password's place holds ("see the vault", "stored in 1Password") and a
# diceware passphrase seldom does.
_NOTE_WORDS = frozenset((
    "the", "a", "an", "in", "on", "of", "to", "is", "see", "for", "from", "with", "and", "or",
    "your", "my", "our", "ask", "set", "use", "same",
))  # fmt: skip
_PHRASE_SYMBOLS = re.compile(r"[\d!#$%&*+/=?@^~;:.,_-]")


def _passphrase(value: str) -> bool:
    """A digit or a symbol among its words, or four words or more with no note's word."""
    words = value.lower().split()
    if _NOTE_WORDS.intersection(words):
        return False
    return _PHRASE_SYMBOLS.search(value) is not None or len(words) >= 4


def _random_values(pattern: re.Pattern[str], text: str) -> list[Finding]:
    """`pattern`'s values that look like random keys (no word, path or placeholder)."""
    return [
        Finding("CREDENTIAL", *m.span("value"))
        for m in pattern.finditer(text)
        if key_like(m.group("value")) and not is_placeholder(m.group("value"))
    ]


def _url_password(value: str) -> bool:
    """Not a port ("host:8080@", "host:443?next=a@b"), a template (`:${PASS}@`, `:{password}@`,
    `%REDIS_PASSWORD%`: cmd.exe's variable) or a mask; a sigil before symbols (`$Uj=gI.D`) is a
    password's first character (`is_placeholder` reads references)."""
    return not (
        re.split(r"[?#]", value, maxsplit=1)[0].isdecimal()
        or not value.strip("*xX.")
        or is_placeholder(value)  # postgres://app:changeme@, :example-not-real@
    )


_OPEN_REACH = 600  # a command line, or a record's two lines
# (hints in the lower-case text near the end; the pattern). An Azure key row's name may stand
# 60 characters before its key; the rest lie closer.
_NEAR_FORMS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (_DASH_WORDS, OPEN_DASH_OPTION),
    (("password", "secret", "key", "passwd", "pre-shared", "community"), OPEN_NETWORK_SECRET),
    (("aws secret",), OPEN_AWS_CONFIGURE),
    (("key1", "key2", "primary", "secondary"), OPEN_AZURE_KEY_ROW),
)
_NEAR_REACH = 90
_OPEN_FORM_HINTS = HintGroups(hints for hints, _ in _OPEN_FORMS)
_NEAR_FORM_HINTS = HintGroups(hints for hints, _ in _NEAR_FORMS)


def open_form_start(text: str) -> int | None:
    """Where a form that may still be growing at the end of `text` begins (None: none is):
    every form lies within the text's last two lines."""
    last_line = text.rfind("\n")
    tail_start = max(text.rfind("\n", 0, max(last_line, 0)) + 1, len(text) - _OPEN_REACH, 0)
    tail = text[tail_start:]
    starts = [
        tail_start + m.start()
        for hit, (_, pattern) in zip(_OPEN_FORM_HINTS.matched(tail), _OPEN_FORMS, strict=True)
        if hit
        for m in [pattern.search(tail)]
        if m is not None
    ]
    # Forms whose value holds no blank begin within a few words before the text's last blank:
    # looked for there only (searched for over a whole tail, two of them cost ~40 µs a chunk).
    last_blank = max(text.rfind(" "), text.rfind("\t"), last_line)
    near_start = max(last_blank - _NEAR_REACH, last_line + 1, 0)
    near = text[near_start:]
    near_low = near.lower()
    starts.extend(
        near_start + m.start()
        for hit, (_, pattern) in zip(_NEAR_FORM_HINTS.matched(near_low), _NEAR_FORMS, strict=True)
        if hit
        for m in [pattern.search(near)]
        if m is not None
    )
    # the line forms can only be the last line: matched there, not searched for
    line_start = last_line + 1
    starts.extend(
        m.start()
        for pattern in (OPEN_PGPASS_LINE, OPEN_RELAY_LINE)
        for m in [pattern.match(text, line_start)]
        if m is not None
    )
    return min(starts) if starts else None
