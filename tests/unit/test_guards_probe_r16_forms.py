"""Forms a tenth writer's probe showed (benchmarks/data/guards/pii_secrets_probe_r16.jsonl, the
half its card's hash gives 1; the other half is never read): a passphrase in quotes, a key as a
byte array, `htpasswd -b`, a TSIG key on `nsupdate -y`, a vendor's Authorization scheme, a
numeric password, a key under a `_AUTH` name, a relative clause between "password" and its
value, Arabic's "and" written on the word, a clause ending in a colon before a key, and values
longer than the patterns' length limit. Each with look-alikes that must stay untouched.

The texts were written for this test (the probe's own rows are streamed in
tests/unit/test_guards_streaming.py); every value is made up.
"""

from __future__ import annotations

import base64
import random
import string

import pytest

from guards.detectors.secrets import SecretsDetector


def secrets(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "export RESTIC_PASSWORD='cobalt tram ledger $unrise 71'\n",
            "cobalt tram ledger $unrise 71",
        ),
        ('wifi_password: "fern gully 1987 kettle"\n', "fern gully 1987 kettle"),
        (
            "  network_key: [61, 7, 198, 42, 250, 13, 88, 171, 5, 219, 146, 33, 77, 120, 164, 9]",
            "[61, 7, 198, 42, 250, 13, 88, 171, 5, 219, 146, 33, 77, 120, 164, 9]",
        ),
        ("htpasswd -b /etc/nginx/.htpasswd staging 'st4ging-view-only'", "st4ging-view-only"),
        ("htpasswd -nb admin S3cret-pw > out", "S3cret-pw"),
        (
            "nsupdate -y hmac-sha256:acme-update.:mvpEBOpmbVyXxzdvl1vXqylE9L6X0nI1BsevJm4odjI="
            " <<EOF",
            "mvpEBOpmbVyXxzdvl1vXqylE9L6X0nI1BsevJm4odjI=",
        ),
        (
            "--header 'Authorization: Klaviyo-API-Key pk_32ad427e3b606aa5664bbbd22185b93080'",
            "pk_32ad427e3b606aa5664bbbd22185b93080",
        ),
        ('<X-PRE-PROCESS cmd="set" data="default_password=7730165"/>', "7730165"),
        ('TWILIO_AUTH = "2a02b341b1e0337c267e83a6d0ebb893"', "2a02b341b1e0337c267e83a6d0ebb893"),
        ("la password che uso da sempre è Ferrandi_1978!pec. Thunderbird", "Ferrandi_1978!pec"),
        ("the password I always use is Quill-Harbor-55, is it weak?", "Quill-Harbor-55"),
        ("البريد هو finance@example.ae وكلمة المرور Nakheel@Dubai77. رقم", "Nakheel@Dubai77"),
        (
            "Dit is het token dat ik in Moneybird heb aangemaakt: "
            "zbLFPduc4UJ-e1Pr8yaMR9PWO_6yhJx .",
            "zbLFPduc4UJ-e1Pr8yaMR9PWO_6yhJx",
        ),
        (
            "Razorpay का key secret यह है: qPrrB7jbIlyKcXAZBWygUMpN । कृपया",
            "qPrrB7jbIlyKcXAZBWygUMpN",
        ),
        (
            '  url: "https://eth-sepolia.g.alchemy.com/v2/-kjqUqHnuii0ioVl8CkKWVILXtt5Wfvy",',
            "-kjqUqHnuii0ioVl8CkKWVILXtt5Wfvy",
        ),
        (
            "https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161",
            "9aa3d95b3bc440fa88ea12eaa4456161",
        ),
        (
            '  accounts: ["0x2ca4c230adbb72f6dfd6571408ae28ac56a684a992524fdd1fe672d2485e35d5"],',
            "0x2ca4c230adbb72f6dfd6571408ae28ac56a684a992524fdd1fe672d2485e35d5",
        ),
        ("Backlog SSID1 Home; MqttPassword t4sm0ta/Plug$22; Topic plug", "t4sm0ta/Plug$22"),
        (
            "업체에서 받은 API 키는 2TA1pvPQqXvhTTImiXCcMZWuCJ73mLHm 이고",
            "2TA1pvPQqXvhTTImiXCcMZWuCJ73mLHm",
        ),
        ("APIキーは sk9Xq2LmW0pXc4Rt7Ns2Kd9Vb3 です", "sk9Xq2LmW0pXc4Rt7Ns2Kd9Vb3"),
    ],
)
def test_a_value_in_these_forms_is_masked_value_only(text: str, value: str) -> None:
    found = secrets(text)
    assert [v for _, v in found] == [value], found


@pytest.mark.parametrize(
    "text",
    [
        'db_password = "see the vault"',
        'password: "stored in the vault"',
        'PASSWORD_PROMPT="Enter your password: "',
        "  ext_pan_id: [221, 221, 221, 221, 221, 221, 221, 221]",
        "public_key = [61, 7, 198, 42, 250, 13, 88, 171, 5, 219, 146, 33, 77, 120, 164, 9]",
        "network_key: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
        "htpasswd -c /etc/nginx/.htpasswd admin",
        "apt-get install -y dnsutils && dig example.com",
        "PASSWORD_MIN_LENGTH=12\nmax_password_age=7776000\npassword=1234",
        "BASIC_AUTH=enabled",
        "the password I use is too short",
        "a password which is hard to guess is better",
        "SHA256 of the key file I downloaded: 3c7ddcdb64bb7091905c9806f77b1d0db093efb7aa",
        "tx 0x2ca4c230adbb72f6dfd6571408ae28ac56a684a992524fdd1fe672d2485e35d5 confirmed",
        "see https://docs.alchemy.com/v2/reference-guide for the API",
        "Password1 is the first field of the form",
        # an IBAN grouped in fours is no application password (the PII detector's)
        "- Marco Benedetti \u2013 IT73 N313 1860 2233 O7ST 1KTM WLW \u2013 860,50 EUR",
    ],
)
def test_look_alikes_stay_untouched(text: str) -> None:
    assert secrets(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # Discord tokens issued since 2023 end in 38 characters; the plugin's pattern read 27
        (
            "DISCORD_TOKEN=MTE4NzQ2NTc4OTAxMjM0NTY3OA.GhJkLm.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AB",
            "MTE4NzQ2NTc4OTAxMjM0NTY3OA.GhJkLm.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AB",
        ),
        ("bot: NzkyNzE1NDU0MTk2MDg4ODQy.X-hvzA.Ovy4MCQywSkoMRRclStW4xAYK7I ok", None),
        # a password's "!" at the end of a sentence is masked with it
        ("my password is Hunter2! thanks", "Hunter2!"),
        # a properties file's value runs past ";" to its line's end
        ("spring.datasource.password=p@y0uts;Weekly!\nx=1", "p@y0uts;Weekly!"),
        # Asterisk's registration line
        ("register => vl-88314:Vq8#rTz2LmW@sip.voipline.co.uk/88314", "Vq8#rTz2LmW"),
        # an option's value cut at its first blank gives way to the longer reading
        (
            'curl --user "api-bot:xR7k Lp2q 9mWz Ab3E Tn8u Qc5v" https://x',
            "xR7k Lp2q 9mWz Ab3E Tn8u Qc5v",
        ),
    ],
)
def test_a_value_is_masked_whole(text: str, value: str | None) -> None:
    """Values that a form or a pattern used to mask only in part: the rest was readable."""
    found = secrets(text)
    expected = value or text.split()[1]
    assert [v for _, v in found] == [expected], found


def test_a_connection_string_value_still_ends_at_its_semicolon() -> None:
    assert [v for _, v in secrets("Pwd=abc12345;Server=db")] == ["abc12345"]
    assert [v for _, v in secrets("password=abc123; # old")] == ["abc123"]


def _random_value(n: int) -> str:
    rng = random.Random(n)
    return "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(n))


@pytest.mark.parametrize("length", [800, 2048, 2400, 6000])
def test_a_value_longer_than_the_patterns_read_is_masked_to_its_end(length: int) -> None:
    """A named value was read to 200 characters and the rest of it left readable (an AWS
    session token runs to ~1,000); the patterns read 2,048 now, and a longer one is masked to
    the end of its run."""
    value = _random_value(length)
    for text in (f"export AWS_SESSION_TOKEN={value}\nnext line", f'token = "{value}"'):
        found = secrets(text)
        assert [v for _, v in found] == [value], [(t, len(v)) for t, v in found]


def test_a_base64_private_key_under_a_label_keeps_its_type() -> None:
    """A run a label names as a key ("the deploy key I pasted:") that decodes to a private key
    is typed by what it decodes to."""
    pem = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTU\n"
        "-----END PRIVATE KEY-----\n"
    )
    encoded = base64.b64encode(pem.encode()).decode()
    assert secrets(f"Here is the deploy key I pasted: {encoded}\n") == [("PRIVATE_KEY", encoded)]
