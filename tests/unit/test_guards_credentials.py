"""Credentials detect-secrets has no plugin for: provider keys, named secrets, bearer tokens.

Every value here is made up in the provider's documented format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.chain import GuardChain
from guards.detectors.credentials import find_named, open_named_start
from guards.detectors.secrets import SECRET_TYPES, SecretsDetector
from guards.hooks import InputCheck
from guards.policy_loader import load_policy
from guards.policy_store import DEFAULT_POLICY_PATH
from guards.verdict import Finding, Stage

ANTHROPIC = "sk-ant-api03-" + "Zq7_Kd2-Lm9xWv4Tb8Ns1Rj6Hc3Yp5Fg0" * 3 + "AA"
OPENAI_PROJECT = "sk-proj-" + "Rb4nT9wQe2LmXz7Kc1VdYh8Jf3Gs6Pu0" * 3 + "-Aq_1"
OPENAI_LEGACY = "sk-" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF2gH4jK6mN8pQ0rS"
GOOGLE = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
HUGGINGFACE = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
GITHUB_FINE = "github_pat_11ABCDEFG0" + "a1B2c3D4e5F6g7H8i9J0k" + "_" + "Zy9Xw8Vu7Ts6" * 5
STRIPE_LONG = "sk_live_51HqLyjWDarjtT1zdp7dc" + "QwErTy12" * 9


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (ANTHROPIC, "ANTHROPIC_API_KEY"),
        (OPENAI_PROJECT, "OPENAI_API_KEY"),
        (OPENAI_LEGACY, "OPENAI_API_KEY"),
        (GOOGLE, "GOOGLE_API_KEY"),
        (HUGGINGFACE, "HUGGINGFACE_TOKEN"),
        (GITHUB_FINE, "GITHUB_TOKEN"),
        (STRIPE_LONG, "STRIPE_KEY"),  # detect-secrets' own pattern stops after 24 characters
        ("rk_test_" + "4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_KEY"),
    ],
)
def test_provider_keys_detect_secrets_lacks_are_found_whole(value: str, kind: str) -> None:
    text = f"my key is {value} - can you see why the call fails?"
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DB_PASSWORD=hunter", [("PASSWORD", "hunter")]),  # .env: any value
        ('  password: "tiger!"\n', [("PASSWORD", "tiger!")]),
        ("password: postgres\nport: 5432", [("PASSWORD", "postgres")]),  # a config line
        ('{"password": "s3cr3t", "user": "ann"}', [("PASSWORD", "s3cr3t")]),
        ('conn = connect(user="app", password="Tr0ub4dor&3")', [("PASSWORD", "Tr0ub4dor&3")]),
        ("dbPassword := 'p@ss!w0rd#'", [("PASSWORD", "p@ss!w0rd#")]),
        ("client_secret: 8f3a9c2e71b4d605", [("CREDENTIAL", "8f3a9c2e71b4d605")]),
        ("SLACK_BOT_TOKEN=abc123def456ghi7", [("CREDENTIAL", "abc123def456ghi7")]),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            [("AWS_SECRET_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
        ),
        (
            'curl -H "Authorization: Bearer ya29.a0AfH6SMBx-3kL~9zQ/7pR+2w" https://api.example',
            [("CREDENTIAL", "ya29.a0AfH6SMBx-3kL~9zQ/7pR+2w")],
        ),
        # other languages, Wi-Fi passphrases, .netrc and sentences
        ('  passwort: "Schwalbe!Nest-2026"', [("PASSWORD", "Schwalbe!Nest-2026")]),
        ('network={\n  psk="otter-lantern-Basil-88"\n}', [("PASSWORD", "otter-lantern-Basil-88")]),
        (
            "machine api.example.com\n  login ci-bot\n  password Lx4!rT9zQe2w\n",
            [("PASSWORD", "Lx4!rT9zQe2w")],
        ),
        ("user root, password Tangerine#Lamp44, and", [("PASSWORD", "Tangerine#Lamp44")]),
        ("i reset her password to Sakura-Teal-2026 but", [("PASSWORD", "Sakura-Teal-2026")]),
        ("mi contraseña es Lune7!bleu.", [("PASSWORD", "Lune7!bleu")]),
        # an npm granular token on its own, outside an .npmrc line
        (
            "npm token npm_FZSdhp65ChgtQiXRAMQ5fAq0YqoHfLs5royy ok?",
            [("NPM_TOKEN", "npm_FZSdhp65ChgtQiXRAMQ5fAq0YqoHfLs5royy")],
        ),
        # a provider key under a name keeps its provider's type
        (f"ANTHROPIC_API_KEY={ANTHROPIC}", [("ANTHROPIC_API_KEY", ANTHROPIC)]),
        # a vendor's own token name, in lower case: no known qualifier before "token"
        ('pagerduty_token   = "sWuAGYL7V-vn1-WekLUx"', [("CREDENTIAL", "sWuAGYL7V-vn1-WekLUx")]),
        ("runner_token: glrt-t3Qx9WmZ2kLp8RvN", [("CREDENTIAL", "glrt-t3Qx9WmZ2kLp8RvN")]),
        # "Sec" ending a camelCase name
        (
            '\tgithubWebhookSec  = "3893acae561c3a501d17522b19c41230247ba682"',
            [("CREDENTIAL", "3893acae561c3a501d17522b19c41230247ba682")],
        ),
    ],
)
def test_a_value_assigned_to_a_secrets_name_is_masked_not_the_name(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # tokenizer and model settings: "token" is a tokenizer's word too
        'tokenizer: gpt2\nmax_tokens: 512\npad_token: "<pad>"\nbos_token = "<s>"',
        "text_pad_token=129_595, eos_token_id: 2",
        "_UNICODE_TOKEN = 'dbapiunicode'",
        # a parser's, a paginator's and a tokenizer's tokens under lower-case names
        'next_token = "AAAAQ3Zx9WmZ2kLp8RvN"\nnextPageToken: "CiAKGjBpNDd2Nmp2Zml2cXRwYjBp"',
        'decoder_start_token = "x7Yt2Qw9Lm3K"\ncontinuation_token: "Zq1x9WmZ2kLp8RvN"',
        "cancellation_token = CancellationToken.None",
        'best_token = candidate_0\nentity_mask2_token=entity_mask2_token,\n"per_token", "per_1x32"',
        # "sec" is seconds: a number, a duration, a word of its own
        'timeoutSec: 30\nretrySec = "1500ms"\ntimeout_sec = "t9Qw2Lm3Kx7Y"',
        # references, templates and placeholders
        "api_key: os.environ/OPENAI_API_KEY",
        "password: ${DB_PASSWORD}",
        'password = os.environ["DB_PASSWORD"]',
        "password = settings.DB_PASSWORD",
        "const apiKey = process.env.API_KEY;",
        'api_key="your-api-key-here"',
        'ENV_API_KEY = "ANTHROPIC_API_KEY"',
        "password: ********",
        "token = DEFAULT_TOKEN",
        "secret: PotentialSecret",
        "PWD=/home/ann/project",
        # names that only contain a credential word
        "DB_PASSWORD_FILE=/run/secrets/db\npassword_min_length = 12\nbypass = true",
        # prose
        "Password: must be at least 12 characters long.",
        "The key: focus on the users first, then on the budget.",
        "Secret: don't tell anyone.",
        "He was the bearer of bad news.",
        "Use a password manager. The password reset-link expired; my password is weak.",
        "the password is 12 characters long",
    ],
)
def test_names_references_placeholders_and_prose_are_not_secrets(text: str) -> None:
    assert find_named(text) == []


def test_every_new_type_can_be_selected_alone() -> None:
    for kind in ("ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "HUGGINGFACE_TOKEN", "PASSWORD"):
        assert kind in SECRET_TYPES
    text = f"{GOOGLE} and DB_PASSWORD=hunter"
    only_google = SecretsDetector(["GOOGLE_API_KEY"]).find(text)
    assert [f.type for f in only_google] == ["GOOGLE_API_KEY"]
    only_password = SecretsDetector(["PASSWORD"]).find(text)
    assert [(f.type, text[f.start : f.end]) for f in only_password] == [("PASSWORD", "hunter")]


@pytest.mark.parametrize(
    "text",
    [
        "Use password: p@ss!w0rd#x now",
        'config = {"api_key": "Zx9!Yw8@Vu7#Ts6"} ok',
        "Authorization: Bearer ya29.a0Af~H6SM/Bx+3kL9zQ7pR2w done",
        "and my password is now Tange#rine!Lamp44 ok",
    ],
)
def test_a_named_value_being_streamed_is_held_from_its_name(text: str) -> None:
    """At every split inside the value the detector holds at least back to the value's start
    (its characters are not all token characters: the trailing run alone would leak some)."""
    [finding] = SecretsDetector().find(text)
    for cut in range(finding.start, finding.end):
        held = SecretsDetector().holdback(text[:cut])
        assert held >= cut - finding.start, text[:cut]
    assert open_named_start(text) is None  # ended: nothing more to hold


def test_prose_mentioning_keys_pays_little() -> None:
    """Prose that says "key" or "token" without an assignment is never matched at all."""
    text = "The key point is that every token counts; pass the secret sauce. " * 20
    assert find_named(text) == []
    assert open_named_start(text) is None


DEFAULT_POLICY = load_policy(Path(DEFAULT_POLICY_PATH).read_text(encoding="utf-8"), "default.yaml")


async def test_the_default_policy_redacts_the_new_credentials_end_to_end() -> None:
    policy = DEFAULT_POLICY
    chain = GuardChain(policy.guards_for(""), Stage.INPUT, policy.version)
    text = f"Why does this fail?\nANTHROPIC_API_KEY={ANTHROPIC}\nDB_PASSWORD=hunter2\n"
    result = await chain.run(InputCheck(text))
    assert ANTHROPIC not in result.text and "hunter2" not in result.text
    assert "[ANTHROPIC_API_KEY]" in result.text and "DB_PASSWORD=[PASSWORD]" in result.text


def test_findings_are_value_spans() -> None:
    text = 'password = "Tr0ub4dor&3"'
    assert find_named(text) == [Finding("PASSWORD", 12, 23)]
