"""Credentials named by their context rather than beside them (guards/detectors/
credential_contexts.py): a `key` in a block named for a cipher or a credential, a RADIUS or
TACACS+ server block's `key` line, a PSK file's hex line, a password referred to as "the old
one", a WordPress application password, an API client's key by position, Exim's
`client_send`. From r15's read half (benchmarks/data/guards/pii_secrets_probe_r15.jsonl, the
half its card's hash gives 1); each with look-alikes that must stay untouched. The texts were
written for this test and every value is made up.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_contexts import (
    context_reach,
    find_contexts,
    open_context_start,
)
from guards.detectors.secrets import SecretsDetector


def secrets(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "'crypt' => ['key' => 'a3f09c1e77b24d58e6c0b19f2d4a7e31'],",
            "a3f09c1e77b24d58e6c0b19f2d4a7e31",
        ),
        ('"encryption": {"key": "Zq81LmW0pXc4Rt7Ns2Kd9Vb3"}', "Zq81LmW0pXc4Rt7Ns2Kd9Vb3"),
        ("crypt:\n  key: 5e0c9a71b2d84f36a1c7e09b4d2f8a63\n", "5e0c9a71b2d84f36a1c7e09b4d2f8a63"),
        ("'api' => array('key' => 'Kp4Lm9Qw2Zx7Vb1Nc8Rt5Yh3')", "Kp4Lm9Qw2Zx7Vb1Nc8Rt5Yh3"),
        (
            "radius server ISE1\n address ipv4 10.250.0.40 auth-port 1812 acct-port 1813\n"
            " key W1re-R@dius-Kee\nwlan Guest 2 Guest",
            "W1re-R@dius-Kee",
        ),
        (
            "tacacs server TAC1\n address ipv4 10.1.1.9\n key 7 0822455D0A16544541",
            "0822455D0A16544541",
        ),
        (
            'TLSPSKFile=/etc/zabbix/agent.psk". The file contains:\n\n'
            "370701ac0b3d8a2725ddff485363b6f5cecec1fbced5231c5005f658c1d6ffbc\n",
            "370701ac0b3d8a2725ddff485363b6f5cecec1fbced5231c5005f658c1d6ffbc",
        ),
        (
            "the ClickHouse password is in the vault — if that fails, the old one was autumn2023.",
            "autumn2023",
        ),
        ("I reset the wifi password; the new one is: Pl@ntPot-77", "Pl@ntPot-77"),
        ("mine looks like Xq7R 4mTz Lp9W b2Kd Vn8s Hc3F. Do I", "Xq7R 4mTz Lp9W b2Kd Vn8s Hc3F"),
        (
            'with MPRester("0vwyop6JNx2goUguPzWeygu9ptL25w5") as mpr:',
            "0vwyop6JNx2goUguPzWeygu9ptL25w5",
        ),
        (
            "client = tweepy.Client('AAAAQm9keWd1YXJkMjAyNnRva2Vu9x')",
            "AAAAQm9keWd1YXJkMjAyNnRva2Vu9x",
        ),
        ("  client_send = : relay-copperleaf : Pine#Needle;2026", "Pine#Needle;2026"),
        ("  client_send = ^smarthost^Gl4ss-Harbour", "Gl4ss-Harbour"),
    ],
)
def test_a_value_its_context_names_is_masked_value_only(text: str, value: str) -> None:
    found = secrets(text)
    assert [v for _, v in found] == [value], found


@pytest.mark.parametrize(
    "text",
    [
        # a `key` in a block that names no credential, or a value that is no random key
        "'cache' => ['key' => 'a3f09c1e77b24d58e6c0b19f2d4a7e31'],",
        '"sort": {"key": "created_at_2024_descending"}',
        "crypt:\n  key: ${MAGENTO_CRYPT_KEY}\n",
        "'crypt' => ['key' => 'put-your-key-here'],",
        # a key line outside a RADIUS / TACACS block
        "interface Gi0/1\n description uplink\n key chain OSPF-KEYS",
        # hex lines that are digests, or hex with no PSK named
        "psk rotation done. sha256 of the file:\n\n"
        "370701ac0b3d8a2725ddff485363b6f5cecec1fbced5231c5005f658c1d6ffbc\n",
        "commit:\n\n9f2c41e07b3d58a6c1e0f4b27d9a83c5e6f1027b\n",
        # "the old one" that is no password, or names none
        "We replaced the router; the old one was Cisco-2901 and the new one is better.",
        "My password manager is great, the old one was terrible.",
        "the default one is fine, the new one is ${DB_PASSWORD}",
        # the docs' example, and prose of four-letter words
        'it shows "abcd EFGH 1234 ijkl MNOP 5678" as the example in the docs',
        "this code will then work with less than half your data",
        # a client given a name, a URL or an id rather than a key
        'client = MongoClient("mongodb-primary-01.internal")',
        'api = SomeApi("https://api.example.com/v2")',
        "client_send = ^${extract{user}{$auth1}}^${extract{pass}{$auth2}}",
    ],
)
def test_look_alikes_stay_untouched(text: str) -> None:
    assert secrets(text) == []


def test_a_twilio_account_sid_is_no_client_key() -> None:
    """Twilio's `Client(SID, token)` names the account by its SID, an id (the token after it is
    credential_calls.py's; detect-secrets' Twilio pattern types the SID on its own)."""
    text = 'client = Client("AC8c1f6e0b92d74a53b0e47f19a2c6d3e8")'
    assert find_contexts(text, text.lower()) == []


def test_a_stream_holds_the_form_from_where_its_evidence_begins() -> None:
    """The open form starts at the qualifier, the `key` line, the run of groups; the held
    window asks for the released lines above it where the block's name or cue stands."""
    text = "the VPN password changed, the old one was Wint3r;Ga"
    assert open_context_start(text) == text.index("old one")
    block = "radius server ISE2\n address ipv4 10.9.0.4\n key Rad!us#Sh"
    assert open_context_start(block) == block.index(" key")
    groups = "mine is Zk4q R7mW p2"
    assert open_context_start(groups) == groups.index("Zk4q")
    assert open_context_start("nothing to hold here. ") is None
    assert context_reach(" key Rad!us") > 0 and context_reach("old one was x") > 0
    assert context_reach("plain words") == 0
