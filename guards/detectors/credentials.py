"""Credentials detect-secrets has no plugin for: today's provider keys and secrets assigned to a
name ("password: ...", `API_KEY=...`, "Authorization: Bearer ...").

detect-secrets 1.5.0 (and its maintained fork detect-secrets-plus 1.5.2, checked: the same
plugin set) knows no Anthropic, Google or Hugging Face key, no GitHub fine-grained token, no
OpenAI project key without the legacy `T3BlbkFJ` marker, and matches only the first 24
characters of a Stripe key (the rest of a 107-character key reached the model). The provider
patterns below follow each provider's documented key format: a fixed prefix, then a run of
token characters, so they stay inside `secrets.TOKEN_CHARS` and a stream holds them like any
other token.

Named secrets: detect-secrets' KeywordDetector finds them line by line with no character span
and, for config files, takes any word after "password:" (prose such as "Password: must be
long" too). Here the name must end in a credential word at an identifier boundary ("tokenizer",
"max_tokens", "DB_PASSWORD_FILE", "bypass" are not names of secrets) and an unquoted value must
look like a secret rather than a word, a number or code: it holds a digit or a symbol, or the
name is an environment variable's (upper case), or the pair is a config line of its own.
Templates, references and placeholders (`${DB_PASS}`, `os.environ[...]`, `<your-key>`,
`********`) are never findings. Only the value is masked; the name stays readable.

Streams: a value is held from its name until it ends (`open_named_start`). "A config line of its
own" is judged on the text a chunk check sees, which may start after the line did: a stream can
then mask a bare word the whole text would not ("The answer is password: hunter"), never less.
"""

from __future__ import annotations

import re

from guards.detectors.identifiers import code_identifier, wordlike
from guards.detectors.literal_scan import HintGroups, LiteralScan
from guards.verdict import Finding

# Provider keys: (type, pattern). Each ends where the token does (no token character after it).
_END = r"(?![A-Za-z0-9_-])"
PROVIDER_KEYS: dict[str, list[re.Pattern[str]]] = {
    "ANTHROPIC_API_KEY": [re.compile(r"\bsk-ant-[a-z]{2,8}\d{2}-[A-Za-z0-9_-]{32,}")],
    # project, service-account and admin keys; a legacy key (48 characters) without the marker
    "OPENAI_API_KEY": [
        re.compile(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{32,}"),
        re.compile(r"\bsk-[A-Za-z0-9]{40,64}" + _END),
    ],
    "GOOGLE_API_KEY": [re.compile(r"\bAIza[0-9A-Za-z_-]{35}" + _END)],
    "HUGGINGFACE_TOKEN": [re.compile(r"\bhf_[A-Za-z0-9]{30,40}" + _END)],
    "GITHUB_TOKEN": [re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}")],
    "STRIPE_KEY": [re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,}")],
    # a granular access token on its own (the plugin only knows the .npmrc line)
    "NPM_TOKEN": [re.compile(r"\bnpm_[A-Za-z0-9]{36}" + _END)],
}
# Developer platforms' tokens, each in its documented prefixed form. One search for any of
# their prefixes gates them all: fourteen gates of their own cost ~25 µs a KB (measured).
PLATFORM_KEYS: dict[str, list[re.Pattern[str]]] = {
    "DOCKER_HUB_TOKEN": [re.compile(r"\bdckr_pat_[A-Za-z0-9_-]{24,}" + _END)],
    "POSTMAN_API_KEY": [re.compile(r"\bPMAK-[0-9a-f]{24}-[0-9a-f]{34}" + _END)],
    "NEW_RELIC_KEY": [re.compile(r"\bNR(?:AK|II|JS)-[A-Za-z0-9]{27,32}" + _END)],
    "DIGITALOCEAN_TOKEN": [re.compile(r"\bdo[opr]_v1_[0-9a-f]{64}" + _END)],
    "SHOPIFY_TOKEN": [re.compile(r"\bshp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}" + _END)],
    "VAULT_TOKEN": [re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}" + _END)],
    "GRAFANA_TOKEN": [
        re.compile(r"\bgl(?:sa_[A-Za-z0-9]{32}_[0-9a-f]{8}|c_[A-Za-z0-9+/]{32,}={0,2})" + _END)
    ],
    "ATLASSIAN_TOKEN": [re.compile(r"\bATATT3[A-Za-z0-9_=-]{100,}" + _END)],
    "DATABRICKS_TOKEN": [re.compile(r"\bdapi[0-9a-f]{32}(?:-\d)?" + _END)],
    "SENTRY_TOKEN": [re.compile(r"\bsntry[su]_[A-Za-z0-9+/=_]{30,}" + _END)],
    "LINEAR_API_KEY": [re.compile(r"\blin_(?:api|oauth)_[A-Za-z0-9]{40}" + _END)],
    "MAILGUN_KEY": [re.compile(r"\bkey-[0-9a-f]{32}" + _END)],
    "PLANETSCALE_TOKEN": [re.compile(r"\bpscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,}" + _END)],
    "SUPABASE_TOKEN": [re.compile(r"\bsbp_[0-9a-f]{40}" + _END)],
}
PLATFORM_PREFIX = re.compile(
    r"dckr_pat_|PMAK-|NR(?:AK|II|JS)-|do[opr]_v1_|shp(?:at|ss|ca|pa)_|hv[sbr]\.|gl(?:sa|c)_"
    r"|ATATT3|dapi[0-9a-f]|sntry[su]_|lin_(?:api|oauth)_|key-[0-9a-f]|pscale_|sbp_"
)
# Fourteen more, each behind its own hint (PROVIDER_HINTS): in the prefix search above they cost
# ~7 µs a KB more, their hints ~3 µs (measured here). A Mapbox token is a secret only as `sk.`
# (`pk.` ones are public, served to browsers).
PROVIDER_KEYS.update(
    {
        "RUBYGEMS_KEY": [re.compile(r"\brubygems_[0-9a-f]{48}" + _END)],
        "REPLICATE_TOKEN": [re.compile(r"\br8_[A-Za-z0-9]{37}" + _END)],
        "PERPLEXITY_KEY": [re.compile(r"\bpplx-[A-Za-z0-9]{40,56}" + _END)],
        "HEROKU_KEY": [re.compile(r"\bHRKU-[A-Za-z0-9_-]{50,70}" + _END)],
        # a Cloud Storage HMAC key's access ID (a service account's)
        "GCS_HMAC_KEY": [re.compile(r"\bGOOG1[A-Z0-9]{56}" + _END)],
        "GOOGLE_OAUTH_TOKEN": [re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}" + _END)],
        "MAPBOX_TOKEN": [re.compile(r"\bsk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}" + _END)],
        "GOOGLE_OAUTH_SECRET": [re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{28}" + _END)],
        # Honeycomb's ingest and management keys, Tailscale's auth / API / OAuth keys, an age
        # identity (Bech32, upper case), a HubSpot private app's token
        "HONEYCOMB_KEY": [re.compile(r"\bhc[ax][im]k_[0-9a-z]{50,70}" + _END)],
        "TAILSCALE_KEY": [
            re.compile(r"\btskey-(?:auth|api|client|webhook|scim)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}")
        ],
        "AGE_SECRET_KEY": [re.compile(r"\bAGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}" + _END)],
        "HUBSPOT_TOKEN": [
            re.compile(r"\bpat-(?:na|eu|ap)\d-[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}" + _END)
        ],
        "DISCORD_WEBHOOK": [
            re.compile(
                r"\bhttps://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/"
                r"[A-Za-z0-9_-]{60,68}" + _END
            )
        ],
        # a Zapier "Catch Hook" URL: whoever has it can trigger the Zap
        "ZAPIER_WEBHOOK": [
            re.compile(r"\bhttps://hooks\.zapier\.com/hooks/catch/\d{4,12}/[A-Za-z0-9]{5,12}/?")
        ],
    }
)
PROVIDER_KEYS.update(PLATFORM_KEYS)
PROVIDER_HINTS: dict[str, tuple[str, ...]] = {
    "ANTHROPIC_API_KEY": ("sk-ant-",),
    "OPENAI_API_KEY": ("sk-",),
    "GOOGLE_API_KEY": ("AIza",),
    "HUGGINGFACE_TOKEN": ("hf_",),
    "GITHUB_TOKEN": ("github_pat_",),
    "STRIPE_KEY": ("k_live_", "k_test_"),
    "NPM_TOKEN": ("npm_",),
    "RUBYGEMS_KEY": ("rubygems_",),
    "REPLICATE_TOKEN": ("r8_",),
    "PERPLEXITY_KEY": ("pplx-",),
    "HEROKU_KEY": ("HRKU-",),
    "GCS_HMAC_KEY": ("GOOG1",),
    "GOOGLE_OAUTH_TOKEN": ("ya29.",),
    "MAPBOX_TOKEN": ("sk.eyJ",),
    "GOOGLE_OAUTH_SECRET": ("GOCSPX-",),
    "DISCORD_WEBHOOK": ("/api/webhooks/",),
    "ZAPIER_WEBHOOK": ("hooks.zapier.com",),
    "HONEYCOMB_KEY": ("hcaik_", "hcxik_", "hcamk_", "hcxmk_"),
    "TAILSCALE_KEY": ("tskey-",),
    "AGE_SECRET_KEY": ("AGE-SECRET-KEY-",),
    "HUBSPOT_TOKEN": ("pat-na", "pat-eu", "pat-ap"),
}

# The name of a secret: its last part is one of these words, at an identifier boundary (start,
# "_", ".", "-", a quote, or a camelCase hump: "dbPassword").
# The password in other languages: passwort, kennwort, contraseña, senha, wachtwoord, mot de
# passe; psk: a Wi-Fi passphrase (wpa_supplicant).
_LOGIN_WORDS = (
    r"pass(?:word|wd|phrase|wort)?|pwd|pw|psk|kennwort|contrase[ñn]a|senha|wachtwoord"
    r"|mot_?de_?passe|has[lł]o|heslo|parola|[sş]ifre|lozinka|jelsz[oó]|salasana|l[oö]senord"
)
# Names written run together in lower case: the long words end a name wherever they stand
# (`smtppassword`, `Verschlüsselungskennwort`); "pass" only after a service's name
# (`smtppass`, `dbpass`; never `bypass`, `compass`).
_RUN_TOGETHER = (
    r"(?<=[a-zäöü])(?i:password|passwd|passphrase|passwort|kennwort|wachtwoord)"
    r"|(?<=[A-Z])(?<!NO)(?:PASSWORD|PASSWD|PASSPHRASE)"  # PGPASSWORD; not sudoers' NOPASSWD
    r"|(?<![A-Za-z0-9])(?i:smtp|db|mail|root|admin|user|ftp|sftp|sql|mysql|pg|redis|ldap|proxy"
    r"|wifi|wlan|vpn|ssh|imap|pop3?|bind|rcon|nas|gpg|sa|(?:key|trust)?store|key)_?pass"
)
# ... and keys: `azurestorageaccountkey`, `awssecretkey`; an environment variable's `_KEY` or
# `_PAT` (`PPLX_KEY`), whose value must then look like a key (`_env_key_value`).
_RUN_TOGETHER_KEYS = (
    r"(?<=[a-z])(?:accountkey|accesskey|secretkey|apikey|privatekey|masterkey|signingkey)"
    r"|(?<=[A-Z0-9]_)(?:KEY|PAT)"  # PAT: a personal access token (`FEED_PAT`, `GITHUB_PAT`)
)
_WORD = (
    rf"(?i:{_LOGIN_WORDS}|secret|token|api[_-]?key|apikey|hmac(?:[_-]?(?:key|secret))?|authtok"
    r"|salt|secret\.key|secret[_-]?id"
    r"|(?:access|secret|private|auth|client|account|service|master|signing|encryption|app"
    r"|application|consumer|shared|pre[_-]?shared|storage|license|licence|subscription|ingest"
    r"|ingestion|integration|admin|session|write|webhook)[_-]?key)"
)
# "Sec" ends a camelCase name as an abbreviation (`githubWebhookSec`); as a word of its own it
# is seconds (`timeout_sec`), so only the hump counts, and only before a token-like value.
# A digit or two may follow the word (rclone's `password2`).
# (a boundary: a name's start, a camelCase hump, or an acronym's end: `APIPassword`)
_BOUNDARY = r"(?:(?<![A-Za-z0-9])|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]))"
_NAME = (
    rf"(?:{_BOUNDARY}{_WORD}|{_RUN_TOGETHER}|{_RUN_TOGETHER_KEYS}|(?<=[a-z])Sec)"
    r"\d{0,2}(?![A-Za-z0-9_])"
)
# `name = value`, `name: value`, `name := value`; a typed constant (`API_TOKEN: &str = "..."`,
# `apiKey: string = '...'`); or a quoted name, a comma and a quoted value, as a call or a tuple
# passes the pair (PHP's `define('DB_PASSWORD', '...')`, `("password", "...")`, `put("apiKey",
# ...)`): `comma` is set, and only a quoted value counts.
_ASSIGN = (
    r"(?:[\"'\]]{0,2}[ \t]{0,24}(?::[ \t]{0,4}&?[A-Za-z_][\w<>\[\]. ]{0,24}?[ \t]{0,4}(?==)"
    r"|(?<=[ \t])(?:string|secureString|securestring|String|str)[ \t]{0,4}(?==))?"
    r"(?P<op>:=|=>|[:=])|[\"'](?P<comma>,))[ \t]{0,16}"
)
NAMED_SECRET = re.compile(
    rf"(?P<name>{_NAME}){_ASSIGN}"
    r"(?:(?P<quote>[\"'`])(?P<quoted>[^\s\"'`]{4,2048})(?P=quote)"
    # ODBC's `Pwd={...}` (a value with ";" in it; "}}" is an escaped "}")
    r"|(?<=[=\s])\{(?P<braced>(?:[^{}\n]|\}\}){4,200})\}(?!\})"
    r"|(?P<bare>[^\s\"'`,;]{4,2048}))"
)
# A named secret still being written at the end of a stream: held from its name (a quoted
# value may hold "," and ";"; a bare one is held past them too, as its line may make them part
# of it: `_line_value_end`).
# ... and a name followed by blanks only: its "=" may come next (`db_password       = "X"`,
# aligned assignments: the name left with the blanks, and the value after it was read without
# it; found by a new writer's probe, r14's train half); a quoted value just closed is held for
# the character after it: after a comma-pair's name (`"password", "label": ...`) a ":" makes it
# a key, not the value (r15's read half: a 1Password CLI record masked its keys and kept the
# value, one character per chunk)
OPEN_NAMED_SECRET = re.compile(
    rf"{_NAME}(?:{_ASSIGN}"
    r"(?:[\"'`][^\s\"'`]{0,2048}[\"'`]?|[^\s\"'`]{0,2048}|(?<=[=\s])\{(?:[^{}\n]|\}\}){0,200}\}?)"
    r"|[\"'\]]{0,2}[ \t]{1,24})\Z"
)
_IDENTIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# "token" alone is a tokenizer's, a parser's or a paginator's word too (pad_token, bos_token,
# text_pad_token, next_token, nextPageToken, cancellation_token): a name ending in it is a
# credential's unless the word before it is one of these. The earlier rule, a credential only
# after a known qualifier (access, auth, github, ...), left every vendor's own name
# (`pagerduty_token`, `runner_token`) readable.
_TOKEN_NOT_SECRET = frozenset((
    "pad", "bos", "eos", "unk", "sep", "cls", "mask", "start", "end", "stop", "special",
    "added", "new", "next", "prev", "previous", "last", "first", "current", "cur", "input",
    "output", "prompt", "completion", "max", "min", "num", "image", "img", "audio", "video",
    "vision", "text", "word", "sub", "eot", "eom", "think", "tool", "sentinel", "placeholder",
    "page", "continuation", "cancel", "cancellation", "sync", "resume", "lock", "lexer",
    "parser", "peek", "expected", "unexpected", "ast", "syntax", "decoder", "vocab", "split",
    "per",
))  # fmt: skip
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]{0,23}(?:_[a-z0-9]{1,24})+")  # words, not hex runs
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")
# every credential word holds one
_WORDS = ("pass", "pw", "psk", "secret", "token", "key", "hmac", "kennwort", "contrase",
          "senha", "wachtwoord", "salt", "authtok", "clave", "haslo", "hasło", "heslo", "parola",
          "sifre", "şifre", "lozinka", "jelsz", "salasana", "losenord", "lösenord")  # fmt: skip
# (of the password's word in other languages as a name, `_HINTS` looks for the commonest three
# only: each look is one scan of the text, ~0.6 µs a KB)
_OP_REACH = 40  # from such a word to the assignment: the rest of the name, quotes, spaces
_NAME_BEFORE_WORD = 16  # "encryption_key": the name starts before the word found
# from the word to the end of a 2,048-character value (an AWS session token runs to ~1,000: a
# value cut at 200 left the rest of it readable; a longer one is masked to its end by
# secrets.py, `whole_runs`)
_MAX_NAMED_VALUE = 2048
_MATCH_REACH = _MAX_NAMED_VALUE + 100
# Prose and .netrc: "password Tangerine#Lamp44", "reset her password to Sakura-Teal-2026",
# "login ci-bot password Lx4!rT9z", "Passwort ist ...": no ":" or "=", so the value must look
# like a password (a letter with a digit or a symbol; "password manager", "password reset-link"
# are words).
_PROSE_WORD = (
    # German and Dutch compounds end in the word ("Einmalpasswort", "Startkennwort",
    # "toegangswachtwoord")
    r"(?i:(?<=[a-zäöüß])(?:passwort|kennwort|wachtwoord)"
    r"|\b(?:password|passwd|passphrase|passwort|kennwort|contrase[ñn]a|senha|wachtwoord"
    r"|mot de passe|pw|lösenord(?:et)?|passord(?:et)?|adgangskode(?:n)?|salasana|hasło|heslo"
    r"|jelszó|şifre|пароль|clave|κωδικός(?: πρόσβασης)?|συνθηματικό|mật khẩu"
    r"|pre-?shared key|parola|parolă|ה?סיסמ[הא]|كلمة (?:المرور|السر)|पासवर्ड)"
    # Arabic writes "and", "with" ... on the word: "وكلمة المرور" (and the password)
    r"|(?<=[وفبل])كلمة (?:المرور|السر))"
    # a word for "new", "old", "current" or "temporary" after it, as Vietnamese, the Romance
    # languages and Russian put one ("mật khẩu cũ là ...", "la contraseña nueva es ...")
    r"(?:[ \t]+(?i:cũ|mới|hiện tại|tạm thời|nuevo|nueva|antiguo|antigua|actual|nouveau|nouvel"
    r"|nouvelle|ancien|ancienne|actuel|actuelle|provisoire|nuovo|nuova|vecchio|vecchia"
    r"|attuale|novo|nova|antigo|antiga|atual|temporária|temporário|новый|старый|текущий"
    r"|временный|nouă|veche|actuală|yeni|eski|mevcut|baru|lama|sementara|ใหม่|เก่า))?"
)
# Chinese, Japanese and Korean write no blank around the word: its particle or a colon
# (full width too) and then the value.
_CJK_WORDS = ("パスワード", "密码", "密碼", "비밀번호", "รหัสผ่าน")  # and Thai's
_CJK_WORD = r"(?:パスワード|密码|密碼|비밀번호|รหัสผ่าน)"
_CJK_JOINER = r"(?:は|が|\uff1a|:|是|为|為|는|은|를|คือ|=|\uff1d|[ \t])"
CJK_PASSWORD = re.compile(
    rf"{_CJK_WORD}{_CJK_JOINER}+"
    r"(?P<bare>[^\s\"'`,;、。\uff0c\uff1a]{6,64})"
)
# English, Spanish, German, French, Portuguese, Italian, Swedish, Norwegian / Danish, Finnish,
# Polish, Czech
# ... Greek, Vietnamese
_IS = r"is|was|es|ist|lautet|est|é|era|war|è|är|er|on|jest|je|είναι|là|este|है|هي|הוא|היא"
# "is now", "is tijdelijk" (temporarily), "agora é": a word of time between the name and value
_WHEN = (
    r"now|temporarily|currently|still|again|just|tijdelijk|nu|agora|ahora|maintenant|désormais"
    r"|jetzt|nun|momentan|ora|adesso|teraz|nyt|τώρα|giờ"
)
_CONNECTORS = (
    rf"(?:[ \t]+(?i:{_IS}|{_WHEN}|to|set|changed|will|be|used|reset|updated|rotated)"
    r"|[ \t]*(?:->|=>|\u2192))"  # "password was reset to X", "password -> X"
)
# "the password for the staging box is ...", "pw on the NAS is ...", "le mot de passe du
# compte « deploy » : ...": what it opens, then "is" or a colon. (A word may end in a comma:
# "a senha do roteador mudou, agora é ...".)
_OF_WORD = r"[ \t]+[\w.@«»\"'-]{1,30},?"
_PREPOSITIONS = (
    r"(?i:for|of|on|to|at|für|para|pour|per|till|för|til|dla|do|na|pro|de|del|da|di"
    r"|van|voor|du|des|dos|das|della|dello|der|για|του|της|của|cho|от|для|к|у|від|до)"  # noqa: RUF001 (Greek)
)
# ... or a relative clause: "the password I always use is ...", "la password che uso da sempre
# è ...", "la contraseña que me diste es ..." (its verb "is" or a colon closes it)
_RELATIVE = r"(?i:that|which|I|we|you|he|she|they|che|que|qui|die|dat|som|który|która|které)"
_PROSE_OF = (
    rf"(?:[ \t]+(?:{_PREPOSITIONS}|{_RELATIVE})(?:{_OF_WORD}){{1,6}}?"
    rf"(?=[ \t]+(?i:{_IS})\b|[ \t]?:[ \t]))?"
)
# The value after blanks, or on the next line after "is" ("the new pre-shared key is" then
# the key; not after a colon alone: "/etc/mosquitto/passwd:" then the file's lines), in quotes
# or backticks or none.
_BEFORE_VALUE = r"(?:[ \t]?[:=])?(?:[ \t]+|[ \t]*\n[ \t]*)" + "[\"'`\u00ab\u201c\u2018]?"
_TO_VALUE = (
    rf"(?:{_CONNECTORS}{{1,3}}(?:[ \t]?[:=])?[ \t]*\n[ \t]*"
    rf"|{_CONNECTORS}{{0,3}}(?:[ \t]?[:=])?[ \t]+)" + "[\"'`\u00ab\u201c\u2018]?"
)
PROSE_PASSWORD = re.compile(rf"{_PROSE_WORD}{_PROSE_OF}{_TO_VALUE}(?P<bare>[^\s\"'`,;]{{6,64}})")
OPEN_PROSE_PASSWORD = re.compile(
    rf"{_PROSE_WORD}(?:{_OF_WORD}){{0,7}}?{_CONNECTORS}{{0,3}}"
    rf"(?:{_BEFORE_VALUE}[^\s\"'`,;]{{0,64}})?[ \t]*(?:[ \t]?:)?[ \t]*\n?[ \t]*\Z"
    rf"|{_CJK_WORD}{_CJK_JOINER}*"
    r"[^\s\"'`,;、。\uff0c\uff1a]{0,64}\Z"
    # the first words of a word written in several ("mot de" of "mot de passe")
    r"|(?i:\bmot(?:[ \t]+de?)?(?:[ \t]+p[a-z]{0,4})?|\bpre-?shared(?:[ \t]+k[a-z]{0,2})?"
    r"|\bmật(?:[ \t]+kh\w{0,3})?)[ \t]*\Z"
)
# The value before its name: "use X as the password", "enter X as your new wifi password".
# A name that goes on to another noun is no password ("use argon2id as the password hash").
_VALUE_FIRST_VERB = r"(?i:\b(?:use|enter|type|try|set|pick|choose|put in))"
_NOUNS_AFTER_THE_WORD = (
    r"hash|hashing|field|policy|policies|manager|prompt|column|parameter|argument|salt|length"
    r"|reset|input|validator|validation|algorithm|generator|check|strength|rule|rules|hint"
)
VALUE_FIRST_PASSWORD = re.compile(
    rf"{_VALUE_FIRST_VERB}[ \t]+[\"'`]?(?P<bare>[^\s\"'`,;]{{6,64}}?)[\"'`]?[ \t]+(?i:as)[ \t]+"
    r"(?i:(?:the|my|your|our|a|an|his|her|their)[ \t]+)?"
    r"(?i:(?:new|admin|root|login|wifi|wi-fi|account|temporary|initial|default)[ \t]+){0,2}"
    rf"{_PROSE_WORD}(?![\w-])(?![ \t]+(?i:{_NOUNS_AFTER_THE_WORD})\b)"
)
# a stream holds the verb and its word while what follows may still become " as the password"
OPEN_VALUE_FIRST = re.compile(
    rf"{_VALUE_FIRST_VERB}[ \t]+[\"'`]?[^\s\"'`,;]{{0,64}}"
    r"(?:[\"'`]?[ \t]+(?:(?i:a|as)(?:[ \t]+[\w-]{0,12}){0,4})?)?[ \t]*\Z"
)
_VALUE_FIRST_HINTS = ("use ", "enter ", "type ", "try ", "set ", "pick ", "choose ", "put in ")

# Looked for only in a text with a letter beyond ASCII (a Danish, Finnish or Czech sentence
# has one nearly always): each look costs ~0.7 µs a KB here.
_NON_ASCII_HINTS = ("lösenord", "hasło", "jelszó", "şifre", "пароль", "adgangskode", "salasana",
                    "heslo", "κωδικός", "συνθηματικό", "mật khẩu", "parolă", "סיסמ", "كلمة",
                    "पासवर्ड", *_CJK_WORDS)  # fmt: skip
_PROSE_HINTS = ("pass", "pw", "shared key", "kennwort", "contrase", "senha",
                "wachtwoord", "clave", "parola", *_NON_ASCII_HINTS)  # fmt: skip
# Every word either pass looks for holds one of these ("pwd" holds "pw").
# ("passord" holds "pass"; `_NON_ASCII_HINTS` are looked for apart.)
_HINTS = ("pass", "pw", "psk", "secret", "token", "key", "hmac", "kennwort", "contrase",
          "senha", "wachtwoord", "salt", "authtok", "clave", "shared key", "haslo", "parola",
          "sifre")  # fmt: skip
# A password rather than a word: a letter, and a digit or a symbol (forms with no name to go by
# ask this of their value too: credential_forms.py, credential_calls.py).
PASSWORD_LIKE = re.compile(r"(?=.*[^\W\d_])(?=.*[\d!#$%^&*+=?~|@])")
# A key's word in a sentence ("our HMAC key is F541E47E...", "API key SK... / secret Nr6n..."):
# after it a value that looks like a random key (`key_like`), never a word. "key" counts only
# after a word that makes it a credential's (a cache key, a primary key are not).
KEY_PROSE = re.compile(
    rf"(?i:secret|token|key)\b{_PROSE_OF}{_TO_VALUE}"
    r"(?P<bare>[^\s\"'`,;]{16,2048})"
)
OPEN_KEY_PROSE = re.compile(
    rf"(?i:secret|token|key)\b(?:[ \t]+{_PREPOSITIONS}(?:{_OF_WORD}){{0,6}})?{_CONNECTORS}{{0,3}}"
    rf"(?:{_BEFORE_VALUE}[^\s\"'`,;]{{0,2048}}|(?:[ \t]?:)?[ \t]*\n?[ \t]*)\Z"
)
_KEY_PROSE_WORDS = ("secret", "token", "key")
KEY_QUALIFIERS = frozenset((
    "hmac", "signing", "secret", "api", "access", "private", "webhook", "encryption", "master",
    "license", "licence", "app", "integration", "ingest", "shared", "preshared", "pre-shared",
    "auth", "client", "service", "account", "storage", "subscription", "recovery", "unseal",
    "root", "enrollment", "enrolment", "deploy", "admin", "bot",
))  # fmt: skip
BEARER = re.compile(r"(?i:\bbearer)[ \t]+(?P<bare>[A-Za-z0-9._~+/-]{20,}=*)")
# A shorter token is one only where a header sends it: after `Authorization:` on its line, or
# opening a quoted header value (`{"Authorization": "Bearer X"}`, `-H 'Authorization: Bearer
# X'`). In prose "bearer" is a word ("bearer bonds"); a header's token of 6-19 characters is a
# static API token (simulated: 8-16 character random tokens after `Authorization: Bearer` were
# never found, 0 of 60).
SHORT_BEARER = re.compile(
    r"(?:(?i:\bauthorization)[\"']?[ \t]*[:=,][ \t]*[\"']?|(?<![\w{])[\"'])"
    r"(?i:bearer)[ \t]+(?P<bare>[A-Za-z0-9._~+/-]{6,19}=*)(?![A-Za-z0-9._~+/=-])"
)
OPEN_BEARER = re.compile(r"(?i:\bbearer)[ \t]+[A-Za-z0-9._~+/-]*=*\Z")

_REFERENCE_START = tuple("$<{%!([*&@")
_PLACEHOLDERS = frozenset(
    (
        "null", "none", "nil", "true", "false", "undefined", "required", "optional", "string",
        "str", "secret", "password", "passwd", "pass", "token", "changeit", "redacted",
        "hidden", "masked", "example",
    )
)  # fmt: skip
_PLACEHOLDER_STARTS = (
    "changeme",
    "your",
    "<your",
    "fake",
    "dummy",
    "example",
    "placeholder",
    "insert",
    "replace",
)
# settings.DB_PASSWORD; a segment longer than a name is a token's (Mapbox's `sk.eyJ1....`)
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_]\w{0,40}(?:\.[A-Za-z_]\w{0,40})+")
# "ANTHROPIC_API_KEY", os.environ/OPENAI_API_KEY, env:DB_PASS, process.env.API_KEY: a name or a
# reference to one, not a key.
_ENV_NAME = re.compile(r"(?:\S*[/:.])?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
# secret: PotentialSecret, Sha256Hmac: capitalised parts, one of them a word (_type_name)
_TYPE_NAME = re.compile(r"(?:[A-Z][a-z]+[0-9]*){2,}")
_TYPE_PART = re.compile(r"[A-Z][a-z]{3,}")
# A sigil before a name: a variable or an alias (`$DB_PASS`, `%PASSWORD%`, `!vault`, `*pw`,
# `&pw`, `@Value`); a template or a placeholder (`${...}`, `$(...)`, `<...>`, `{{...}}`, `[...]`).
_SIGIL_NAME = re.compile(r"[$%!*&@]+[A-Za-z_][A-Za-z0-9_*]*[%}]?")  # *MASKED*VALUE* too
# A password's hash in crypt(3)'s form (`$6$salt$...`, bcrypt's `$2b$12$...`, Compose's `$$`
# escaping): a digest, not the password
_CRYPT_HASH = re.compile(
    r"\$\$?(?:1|2[abxy]?|5|6|7|y|gy|argon2(?:id|i|d)|scrypt|pbkdf2(?:-sha\d+)?|apr1|sha1|md5)\$"
)
_TEMPLATE_START = tuple("<{([")
# printf's fields (`'%d.%d.%d' % ver`) and SQL's positional parameters (`$3::text`)
_FORMAT_OR_PARAMETER = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[sdiufxXeEgGcr]|\$\d")
_SECRET_LOOKING = re.compile(r"[0-9!#$%^&*+/=?~|@]")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")


# In a quoted value only a template or a call is code: a random secret may hold any symbol
# (WordPress's salts hold "{", "(" and ",").
# (a call runs to the value's end: `get_secret("db")`; a random salt may hold "Now(;mc&")
_TEMPLATE_MARK = re.compile(r"\{\{|\$\{|#\{|%\(|\{%|^[A-Za-z_][\w.]*\(.*\)$")


def _placeholder(value: str, quoted: bool = False) -> bool:
    return (
        _reference(value)
        or value.lower().startswith(_PLACEHOLDER_STARTS)
        or _IDENTIFIER_PATH.fullmatch(value) is not None  # settings.DB_PASSWORD
        or _type_name(value.lstrip("_"))  # token: _StrPathToken
        or (_TEMPLATE_MARK.search(value) is not None if quoted else any(c in value for c in "([{"))
        or value.lower() in _PLACEHOLDERS
        or not value.strip("*xX.#-_")
    )


def _reference(value: str) -> bool:
    """A reference to a value rather than one. A sigil before symbols is a password's first
    character (`$Zy&DkOnl*`): 6 % of random 10-16 character passwords with symbols begin with
    one of these sigils and were passed as references (simulated)."""
    return (
        value.startswith(_TEMPLATE_START)
        or value.startswith(("${", "$(", "%(", "#{"))
        or _CRYPT_HASH.match(value) is not None
        or _FORMAT_OR_PARAMETER.match(value) is not None
        or (value.startswith(_REFERENCE_START) and _SIGIL_NAME.fullmatch(value) is not None)
    )


def _type_name(value: str) -> bool:
    """A type's name (`PotentialSecret`, `StrPathToken`): capitalised parts, one of them a
    word. Random letters and digits parse as capitalised parts too: with digits allowed after
    a capital, 4.2 % of random 8-16 character letters-and-digits passwords (K7v9Lq2Zx) did, and
    0.8 % still with letters first (Kd5VwJhaDc); these were passed as type names (simulated)."""
    if _TYPE_NAME.fullmatch(value) is None:
        return False
    return any(wordlike(part) for part in _TYPE_PART.findall(value))


def is_placeholder(value: str) -> bool:
    """A quoted or delimited value that stands for a secret rather than being one."""
    return _placeholder(value, quoted=True)


def _line_of_its_own(text: str, start: int, end: int) -> bool:
    """The pair is all its line holds: a config line ("password: hunter", `token = abc`)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    rest = text[end : len(text) if line_end < 0 else line_end]
    return not text[line_start:start].strip(" \t-\"'") and not rest.strip()


def _identifier(text: str, m: re.Match[str]) -> str:
    """The whole name the credential word ends: "db_password", "SLACK_BOT_TOKEN"."""
    start = m.start("name")
    while start and text[start - 1] in _IDENTIFIER_CHARS:
        start -= 1
    return text[start : m.end("name")]


def _names_a_credential(ident: str, word: str) -> bool:
    if word.lower() != "token" or ident.isupper():
        return True
    parts = _NAME_PARTS.findall(ident[: -len(word)])
    return not parts or parts[-1].lower() not in _TOKEN_NOT_SECRET


_NOT_SECRET_KEYS = ("PUBLIC_KEY", "PUB_KEY", "PUBKEY", "GPG_KEY", "PGP_KEY", "SSH_KEY")


def _env_key_value(ident: str, value: str) -> bool:
    """Under a bare `X_KEY` name (a sort key, a cache key, a public key's too) only a value
    that looks random is a secret."""
    return not ident.upper().endswith(_NOT_SECRET_KEYS) and key_like(value)


def key_like(value: str) -> bool:
    """A value that looks like a random key where the name alone does not say it is one (a
    bare `X_KEY`, a table's "Key" column): 16 characters or more with a digit, not a key ID
    (`0x...`)."""
    return (
        len(value) >= 16
        and any(c.isdigit() for c in value)
        and not value.lower().startswith("0x")
        and _token_like(value)
        and not any(map(_CODE_CHARS.__contains__, value))  # key.to(torch.float32), args[0]
        and any(map(_random_part, _KEY_PARTS.split(value)))
    )


_CODE_CHARS = frozenset("()[]{}<>,\"'")

_KEY_PARTS = re.compile(r"[-_.:/+=]+")


def _random_part(part: str) -> bool:
    """Eight characters or more mixing letters and digits ("3a2784cb", "JE6fOpCPw4"), unlike
    names made of words and numbers (`primary_cache_key_v2`, `invoice-2026-11-30`)."""
    return len(part) >= 8 and not part.isdigit() and not part.isalpha()


def _token_like(value: str) -> bool:
    """A token's value: long, with a digit or both cases (not "_sa_default", "dbapiunicode")."""
    return len(value) >= 8 and (
        any(c.isdigit() for c in value) or (value.lower() != value and value.upper() != value)
    )


def _env_assignment(text: str, m: re.Match[str], ident: str) -> bool:
    """`API_KEY=abc`: an upper-case name and no space around "=", as in .env files and shells
    (`TOKEN = CHAR ^ CTL` is a Python constant)."""
    op_start, op_end = m.span("op")
    return (
        ident.isupper()
        and m.group("op") == "="
        and not text[op_start - 1].isspace()
        and not text[op_end : op_end + 1].isspace()
    )


def _value_group(m: re.Match[str]) -> str:
    return next(g for g in ("quoted", "braced", "bare") if m.group(g))


_TEMPLATE_FIELD = re.compile(r"[A-Za-z_]\w*")  # `pwd={pwd}`: a format string's field


def _named_value_is_secret(text: str, m: re.Match[str]) -> bool:
    group = _value_group(m)
    value = m.group(group)
    ident = _identifier(text, m)
    word = m.group("name").rstrip("0123456789")
    if group == "braced":
        if (
            m.group("op") != "="  # `password: {` opens an object
            or value[0].isspace()  # TOML's inline table: `password = { from_env = "X" }`
            or '"' in value
            or _TEMPLATE_FIELD.fullmatch(value)
            or _reference(value)
        ):
            return False
    elif _placeholder(value, quoted=group == "quoted"):
        return False
    if _ENV_NAME.fullmatch(value) or not _names_a_credential(ident, word):
        return False
    if ident == "PWD" and value.startswith(("/", "~", ".")):
        return False  # the shell's working directory (ODBC's PWD is a password)
    ident_start = m.end("name") - len(ident)
    if text[max(ident_start - 2, 0) : ident_start] == "${" and value.startswith("?"):
        return False  # ${DB_PASSWORD:?must be set}: the shell's message when it is unset
    if word.lower() in ("token", "sec", "salt") and not _token_like(value):
        return False
    if word in ("KEY", "PAT") and not _env_key_value(ident, value):
        return False
    if word.lower().startswith("secret") and word[-2:].lower() == "id" and not key_like(value):
        return False  # Vault's / Consul's SecretID is a UUID; Secret Manager's `secret_id` a name
    if _SNAKE_CASE.fullmatch(value.strip("_")) and not _is_login_word(word):
        return False  # best_token = candidate_0, storage_key = "cond_frame_outputs": names
    if m.group("comma"):
        # ("password", some_variable) names no value; {"key": "apiKey", "value": ...}: the
        # quoted word after the comma is the next field's name (credential_forms reads it).
        return group == "quoted" and not text[m.end() : m.end() + 4].lstrip().startswith(":")
    if group != "bare":
        return True
    if value.isdecimal():
        # max_tokens: 512; a password's name with six digits or more is a numeric password
        # (a SIP or voicemail one: FreeSWITCH's `default_password=7730165`)
        return len(value) >= 6 and word.lower().startswith(("passw", "pwd"))
    if _SECRET_LOOKING.search(value) or _env_assignment(text, m, ident):
        return True
    # random letters of both cases are no name: after any name's ":" (`client_secret: X`,
    # where only "secret" begins the match), after a password's "="
    if (m.group("op") == ":" or _is_login_word(word)) and _random_letters(value):
        return True
    # A bare word after "=" is a variable (token = DEFAULT_TOKEN); after ":" on a line of its
    # own, a config value (password: hunter), unless it is a type (secret: PotentialSecret).
    return m.group("op") == ":" and _line_of_its_own(text, m.start(), m.end())


def _random_letters(value: str) -> bool:
    """Letters of both cases that make no name (`zRKZuQOB` in a my.cnf's `password = ...`): a
    variable has words in it (`userPassword`, `hashedPw`) or a name's shape. Without this,
    12.7 % of random 8-16 character letters-and-digits passwords under `db_password = ` were
    passed as variables (those without a digit); 2.3 % now, random letters that take a
    camelCase shape with a word's syllable in it (`ftRutlZfOjUStEkU`; simulated)."""
    return (
        len(value) >= 8
        and value.isascii()
        and value.isalpha()
        and not value.islower()
        and not value.isupper()
        and not (_CASED_NAME.fullmatch(value) and _has_syllable(value))
        and not code_identifier(value)
    )


def _short_bearer(value: str) -> bool:
    """A header's short token: shaped like a password (letters with a digit or a symbol, or
    random letters), no placeholder (`Bearer xxxxxx`) and no documentation's example (words
    and a counter: `token123`, `my-api-key-1`)."""
    if not password_shaped(value) or _placeholder(value, quoted=True):
        return False
    m = _WORDS_AND_COUNTER.fullmatch(value)
    if m is None:
        return True
    parts = [p for p in re.split(r"[-_.]", m.group("words")) if p]
    return not all(len(p) <= 3 or wordlike(p) for p in parts)


_WORDS_AND_COUNTER = re.compile(r"(?P<words>[A-Za-z]+(?:[-_.][A-Za-z]+)*)[-_.]?\d{0,4}")


def password_shaped(value: str) -> bool:
    """A bare value a password could be: a letter with a digit or a symbol, or random letters
    of both cases (`_random_letters`)."""
    return PASSWORD_LIKE.match(value) is not None or _random_letters(value)


def _has_syllable(value: str) -> bool:
    """Three lower-case letters or more with a vowel among them: a word's part (`user`,
    `ass` in `myPassWd`), which random letters of both cases seldom hold."""
    return any(
        len(run) >= 3 and any(v in run for v in "aeiouy") for run in _LOWER_RUN.findall(value)
    )


# camelCase and PascalCase names, acronyms in them followed by a word (`parseHTMLString`,
# `myPassWd`) or ending them (`userID`)
_CASED_NAME = re.compile(r"[a-z]*(?:[A-Z]+[a-z]{2,}|[A-Z][a-z])*[A-Z]*")
_LOWER_RUN = re.compile(r"[a-z]+")


_LOGIN_WORD = re.compile(rf"(?i:{_LOGIN_WORDS})")
_NAME_AT_END = re.compile(rf"(?:{_BOUNDARY}{_WORD}|{_RUN_TOGETHER})(?=\d{{0,2}}\Z)")
_RUN_TOGETHER_AT_END = re.compile(rf"(?:{_RUN_TOGETHER})\Z")


def named_value_kind(name: str, value: str, *, quoted: bool) -> str | None:
    """The type of `value` given under `name` elsewhere than in an assignment (an option, a
    name/value record: guards.detectors.credential_forms), or None when it is no secret: the
    name must end in a credential word and the value pass the checks an assigned one does;
    an unquoted value under a token's or key's name must look like one."""
    m = _NAME_AT_END.search(name)
    if m is None or not _names_a_credential(name, m.group()):
        return None
    word = m.group()
    if _placeholder(value, quoted=quoted) or _ENV_NAME.fullmatch(value) or value.isdecimal():
        return None
    if word.lower() == "token" and not _token_like(value):
        return None
    looks_secret = (
        _SECRET_LOOKING.search(value) is not None or _token_like(value) or _random_letters(value)
    )
    if not quoted and not _is_login_word(word) and not looks_secret:
        return None
    return _named_type(word, value, name)


def _is_login_word(word: str) -> bool:
    """A password's word, alone or run together (`smtppass`, `Verschlüsselungskennwort`)."""
    return _LOGIN_WORD.fullmatch(word) is not None or _RUN_TOGETHER_AT_END.search(word) is not None


def _named_type(word: str, value: str, ident: str) -> str:
    if _is_login_word(word):
        return "PASSWORD"
    if "aws" in ident.lower() and _AWS_SECRET.fullmatch(value):
        return "AWS_SECRET_KEY"
    return "CREDENTIAL"


def _line_value_end(text: str, at: int) -> int:
    """A bare value stops at ";" and "," (`Pwd=x;Server=y`); where the rest of its line is one
    more run with no "=" in it (`spring.datasource.password=p@y0uts;Weekly!`, a properties
    file's value), the value runs to the line's end."""
    line_end = text.find("\n", at)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[at:line_end].rstrip("\r")
    if len(rest) < 2 or "=" in rest or any(c.isspace() for c in rest) or len(rest) > 200:
        return at
    return at + len(rest)


def _named_matches(text: str, low: str, words: list[str]) -> list[re.Match[str]]:
    """Each credential word that an assignment follows closely (str.find, C speed), matched
    where its name can start: running the pattern over the text instead cost ~150 µs a KB of
    prose that merely says "key: ..." (measured here)."""
    matches: dict[int, re.Match[str]] = {}
    for word in words:
        j = low.find(word)
        while j != -1:
            near = low[j : j + _OP_REACH]
            if ":" in near or "=" in near or "," in near:
                end = min(j + _MATCH_REACH, len(text))
                for pos in range(max(j - _NAME_BEFORE_WORD, 0), j + 1):
                    m = NAMED_SECRET.match(text, pos, end)
                    if m is not None:
                        matches[m.start()] = m
                        break
            j = low.find(word, j + 1)
    return [matches[k] for k in sorted(matches)]


def credential_words(low: str) -> list[str]:
    """The credential words (lower case) that the lower-cased text holds: each is looked for
    once (~1 µs a KB each) and the detectors that need one share the answer."""
    present = [w for w in _HINTS if w in low]
    if not low.isascii():
        present += [w for w in _NON_ASCII_HINTS if w in low]
    return present


def find_named(text: str, present: list[str] | None = None) -> list[Finding]:
    """Values assigned to a secret's name, and bearer tokens; each finding is the value only.
    `present`: `credential_words(text.lower())`, when the caller has it."""
    found: list[Finding] = []
    low = text.lower()
    # most texts hold no credential word and stop here
    if present is None:
        present = credential_words(low)
    if not present and "bearer" not in low and "Sec" not in text and "_PAT" not in text:
        return found
    words = [w for w in _WORDS if w in present]
    humps = "Sec" in text
    if (words or humps or "_PAT" in text) and (":" in text or "=" in text or "," in text):
        matches = _named_matches(text, low, words)
        if humps:  # case matters: only a camelCase hump
            matches += _named_matches(text, text, ["Sec"])
        if "_PAT" in text:  # a personal access token's variable, in upper case only
            matches += _named_matches(text, text, ["PAT"])
        for m in sorted({m.start(): m for m in matches}.values(), key=lambda m: m.start()):
            if _named_value_is_secret(text, m):
                group = _value_group(m)
                value = m.group(group)
                word = m.group("name").rstrip("0123456789")
                kind = _named_type(word, value, _identifier(text, m))
                start, end = m.span(group)
                if group == "bare" and "</" in value:  # <Value>...: X</Value>
                    end = start + value.index("</")
                elif group == "bare" and text.startswith((";", ","), end):
                    end = _line_value_end(text, end)
                found.append(Finding(kind, start, end))
    if "bearer" in low:
        found.extend(Finding("CREDENTIAL", *m.span("bare")) for m in BEARER.finditer(text))
        found.extend(
            Finding("CREDENTIAL", *m.span("bare"))
            for m in SHORT_BEARER.finditer(text)
            if _short_bearer(m.group("bare"))
        )
    hints = [h for h in _PROSE_HINTS if h in present]
    taken = {(f.start, f.end) for f in found}
    if hints:
        found.extend(_prose_passwords(text, low, hints, taken))
        if " as " in low and any(map(low.__contains__, _VALUE_FIRST_HINTS)):
            found.extend(_value_first_passwords(text, taken))
    keys = [w for w in _KEY_PROSE_WORDS if w in present]
    if keys:
        found.extend(_key_prose(text, low, keys, taken))
    return found


# A digit between letters ("HelpD3sk.Rotterdam", "Reg1strar.Pinecrest"): a password's, not a
# dotted name's (`settings.DB_PASSWORD`), in a sentence.
_LEET = re.compile(r"[A-Za-z]\d+[A-Za-z]")


def _prose_placeholder(value: str) -> bool:
    if _IDENTIFIER_PATH.fullmatch(value) and _LEET.search(value):
        return False
    return _placeholder(value)


# Where a prose word can start before the hint found in it: "mot de passe", "pre-shared key".
_PROSE_STARTS = {"pass": (0, -7), "shared key": (-4, -3), "סיסמ": (0, -1)}  # ה: Hebrew's "the"


def _prose_passwords(
    text: str, low: str, hints: list[str], taken: set[tuple[int, int]]
) -> list[Finding]:
    """Passwords named in a sentence or a .netrc line, matched where a password word starts."""
    found = []
    for hint in hints:
        j = low.find(hint)
        while j != -1:
            pattern = CJK_PASSWORD if hint in _CJK_WORDS else PROSE_PASSWORD
            for pos in _PROSE_STARTS.get(hint, (0,)):
                m = pattern.match(text, max(j + pos, 0), min(j + 260, len(text)))
                if m is None:
                    continue
                # a "!" that ends it is masked with it (the password's, or the sentence's: both
                # may be); the value is judged without it ("password reset!" is no password)
                masked = m.group("bare").rstrip(".?)\u00bb\u201d\u2019")
                value = masked.rstrip("!")
                span = (m.start("bare"), m.start("bare") + len(masked))
                if span not in taken and password_shaped(value) and not _prose_placeholder(value):
                    taken.add(span)
                    found.append(Finding("PASSWORD", *span))
                break
            j = low.find(hint, j + 1)
    return found


def _value_first_passwords(text: str, taken: set[tuple[int, int]]) -> list[Finding]:
    """Passwords written before their name ("use X as the password")."""
    found = []
    for m in VALUE_FIRST_PASSWORD.finditer(text):
        value = m.group("bare")
        span = m.span("bare")
        if span not in taken and password_shaped(value) and not _prose_placeholder(value):
            taken.add(span)
            found.append(Finding("PASSWORD", *span))
    return found


def _key_prose(text: str, low: str, words: list[str], taken: set[tuple[int, int]]) -> list[Finding]:
    """Keys, secrets and tokens named in a sentence (KEY_PROSE), matched where the word starts."""
    found = []
    for word in words:
        j = low.find(word)
        while j != -1:
            before = low[max(j - 24, 0) : j]
            if (j == 0 or low[j - 1] not in _IDENTIFIER_CHARS) and (
                word != "key" or (before.split() or [""])[-1] in KEY_QUALIFIERS
            ):
                m = KEY_PROSE.match(text, j, min(j + _MATCH_REACH + 180, len(text)))
                if m is not None:
                    value = m.group("bare").rstrip(".!?)\u00bb\u201d\u2019")
                    span = (m.start("bare"), m.start("bare") + len(value))
                    if (
                        span not in taken
                        and key_like(value)
                        and not _placeholder(value)
                        and not _ENV_NAME.fullmatch(value)
                    ):
                        taken.add(span)
                        found.append(Finding("CREDENTIAL", *span))
            j = low.find(word, j + 1)
    return found


def open_named_start(text: str) -> int | None:
    """Where a named secret or bearer token that may still grow begins (None: none is open).

    Its value holds no whitespace, and from its name to its value lie at most ~40 characters,
    so it starts within 80 characters before the text's last space, tab or newline."""
    last_space = max(text.rfind(" "), text.rfind("\t"), text.rfind("\n"))
    tail_start = max(last_space - 80, 0)
    low = text[tail_start:].lower()
    starts = []
    if (_WORD_SCAN.present(low) or "Sec" in text[tail_start:]) and (
        ":" in low or "=" in low or "," in low or low.endswith((" ", "\t"))  # "=" may follow
    ):
        m = OPEN_NAMED_SECRET.search(text, tail_start)
        if m is not None:
            starts.append(m.start())
    if "bearer" in low:
        m = OPEN_BEARER.search(text, tail_start)
        if m is not None:
            starts.append(m.start())
    # a prose password's word may stand up to seven words before its value's blank
    prose_start = max(last_space - _PROSE_REACH, 0)
    prose_low = text[prose_start:].lower()
    for hit, pattern in zip(
        _OPEN_PROSE_GROUPS.matched(prose_low),
        (OPEN_PROSE_PASSWORD, OPEN_KEY_PROSE, OPEN_VALUE_FIRST),
        strict=True,
    ):
        if hit:
            m = pattern.search(text, prose_start)
            if m is not None:
                starts.append(m.start())
    return min(starts) if starts else None


_PROSE_REACH = 260
_OPEN_PROSE_HINTS = (*_PROSE_HINTS, "mot", "shared", "mật")
_WORD_SCAN = LiteralScan(_WORDS)
_OPEN_PROSE_GROUPS = HintGroups((_OPEN_PROSE_HINTS, _KEY_PROSE_WORDS, _VALUE_FIRST_HINTS))


NAMED_TYPES = ("PASSWORD", "CREDENTIAL", "AWS_SECRET_KEY")
