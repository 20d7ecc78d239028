"""Passwords handed to calls and commands by position (guards/detectors/credential_calls.py):
found value only, references and placeholders left alone, held in streams from the call on.

Every value is made up.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_calls import open_call_start
from guards.detectors.secrets import SecretsDetector


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            'es = Elasticsearch("https://es:9200", basic_auth=("elastic", "3last!c-0ld-Cl"))',
            "3last!c-0ld-Cl",
        ),
        ("r = requests.get(url, auth=('svc-report', 'Rep0rt#Feed'))", "Rep0rt#Feed"),
        ('auth = HTTPBasicAuth("api", "B4sic-Auth!x")', "B4sic-Auth!x"),
        ('aiohttp.BasicAuth("bot", password="Aio-Http#22")', "Aio-Http#22"),
        (
            '$conn = mysqli_connect("db.example.net", "root", "r00t!MySQL-shop", "shop");',
            "r00t!MySQL-shop",
        ),
        ('$db = new mysqli("localhost", "wp", "Wp-Local#9", "wp");', "Wp-Local#9"),
        ('$pdo = new PDO("mysql:host=db;dbname=x", "app", "Pd0!secret");', "Pd0!secret"),
        (
            "$pw = ConvertTo-SecureString 'Willkommen-Porto-2026!' -AsPlainText -Force",
            "Willkommen-Porto-2026!",
        ),
        ('ConvertTo-SecureString -AsPlainText -Force -String "Sec#Str1ng"', "Sec#Str1ng"),
        (
            "redis-prod.example.net:6379> AUTH default Pr0d-R3dis#Fern/2026\nOK",
            "Pr0d-R3dis#Fern/2026",
        ),
        ("AUTH Cache-Only-Pw9\n+OK", "Cache-Only-Pw9"),
        (
            '203.0.113.10 198.51.100.140 : PSK "v7Rq!Porto-Berlin#IKEv2-2026"',
            "v7Rq!Porto-Berlin#IKEv2-2026",
        ),
        ('jdevries : EAP "rw-Jd3v!"', "rw-Jd3v!"),
        ('    credentials {\n        password "Gr4dle*Fernhill+CI"\n    }', "Gr4dle*Fernhill+CI"),
        ("wlan.connect('Quintal', 'jabuticaba.2026')", "jabuticaba.2026"),
        ('WiFi.begin("Vodafone-7A3C", "dN4xqPz7Gh2mKe");', "dN4xqPz7Gh2mKe"),
        ('with MCRcon("203.0.113.231", "rc0n-for-the-b0t", port=25575) as m:', "rc0n-for-the-b0t"),
        ('cache-01:6379> CONFIG SET requirepass "R3dis-Cache_Pr0d!"', "R3dis-Cache_Pr0d!"),
        ("cache-01:6379> ACL SETUSER sessions on >sess-only-9Kq2 ~sess:* +get", "sess-only-9Kq2"),
        ("Code voor het beheerpaneel: admin / Kop13r-2eVerd! — het scanadres", "Kop13r-2eVerd!"),
        (
            "Payroll: https://portal.example.com, login ops@example.co.uk / Winter#Ledger2026",
            "Winter#Ledger2026",
        ),
        (
            "CREATE USER 'reporting'@'10.0.%' IDENTIFIED BY 'G1TRtzn_n2keSriyR';",
            "G1TRtzn_n2keSriyR",
        ),
        (
            "CREATE USER grafana IDENTIFIED WITH sha256_password BY 'ch-Grafana*R3ad' HOST",
            "ch-Grafana*R3ad",
        ),
        ("Password used: Sn0w*Glass#Dec05", "Sn0w*Glass#Dec05"),
    ],
)
def test_a_password_passed_by_position_is_masked_value_only(text: str, value: str) -> None:
    assert found(text) == [("PASSWORD", value)]


@pytest.mark.parametrize(
    "text",
    [
        'requests.get(url, auth=("user", os.environ["PW"]))',
        "requests.get(url, auth=(user, password))",
        'auth=("user", "${API_PASSWORD}")',
        '$conn = mysqli_connect($host, $user, $pass, "shop");',
        "$pw = Read-Host -AsSecureString\nConvertTo-SecureString $plain -AsPlainText -Force",
        "ConvertTo-SecureString 'encrypted-blob-from-file'",  # no -AsPlainText: an encrypted one
        "AUTH PLAIN\nAUTH LOGIN\n250-AUTH LOGIN PLAIN CRAM-MD5",
        '%any : PSK "<your-psk>"',
        'the password "secret" is too short',  # no digit or symbol: a word
        "password 'changeme'",
        "wlan.connect(SSID, PASSWORD)",
        "return pi / sin(pi*z) / gamma(1.0-z)",
        "CONFIG SET requirepass $REDIS_PASSWORD",
        "rows are identified by the tag and the timestamp",
        "CREATE USER app IDENTIFIED BY :pw",
    ],
)
def test_references_and_placeholders_passed_by_position_are_not_secrets(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        'basic_auth=("elastic", "3last!c 0ld") ok',
        '$conn = mysqli_connect("db", "root", "r00t!My SQL", "shop"); ok',
        "ConvertTo-SecureString 'Will kommen!26' -AsPlainText -Force",
        "host:6379> AUTH default Pr0d-R3dis#Fern/2026\nOK",
        ': PSK "v7Rq!Porto Berlin" ok',
        'password "Gr4dle*Fernhill+CI" ok',
        "wlan.connect('Quintal', 'jabuticaba 2026') ok",
        'CONFIG SET requirepass "R3dis#Cache!Pr0d" ok',
        "admin / Kop13r(2eVerd! ok",
        "CREATE USER g IDENTIFIED BY 'ch-Grafana*R3ad';",
    ],
)
def test_a_call_being_streamed_is_held_from_where_it_begins(text: str) -> None:
    """At every split inside the value the detector holds back at least to the value's start
    (a blank or a symbol inside the value ends the trailing token run)."""
    [finding] = SecretsDetector().find(text)
    for cut in range(finding.start, finding.end):
        held = SecretsDetector().holdback(text[:cut])
        assert held >= cut - finding.start, text[:cut]
    start = open_call_start(text)
    assert start is None or start < finding.start


def test_an_aws_sdk_credentials_pair_is_an_aws_secret() -> None:
    text = 'AwsBasicCredentials.create("AKIADU2JTM26K5MQ4KV7", "PTDCsHXUpoilZTb4S/DtxP7fo7uzcBZD")'
    assert ("AWS_SECRET_KEY", "PTDCsHXUpoilZTb4S/DtxP7fo7uzcBZD") in found(text)


def test_a_clients_login_with_a_key_argument_is_found_when_the_value_looks_like_a_key() -> None:
    text = 'import wandb\nwandb.login(key="67fa1849964cbc4eacb8d2ec9e8fa11a5b5ef415")'
    assert found(text) == [("CREDENTIAL", "67fa1849964cbc4eacb8d2ec9e8fa11a5b5ef415")]
    assert found('wandb.login(key="my_project_key_name")') == []
    assert found("wandb.login(key=os.environ['WANDB_API_KEY'])") == []


def test_twilios_auth_token_after_the_account_sid_is_a_credential() -> None:
    text = (
        'client = Client("AC3f9d0e1b27a84c5698e0b1d2c3a4f5e6", "490b90dda3ab5297a456db757e43a41e")'
    )
    assert ("CREDENTIAL", "490b90dda3ab5297a456db757e43a41e") in found(text)
    assert found('mqtt = Client("sensor-7", "a1b2c3d4e5f6a7b8")') == []  # no account SID


def test_a_game_servers_quoted_password_setting_is_found() -> None:
    text = 'hostname "Kebab & Clutch"\nrcon_password "flashbang_4_U"\nsv_password ""'
    assert found(text) == [("PASSWORD", "flashbang_4_U")]
