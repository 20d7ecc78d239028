"""A random-looking key after a label that names a credential
(guards/detectors/credential_labels.py): on its line, on the line after a heading, in a list
under one, under a YAML mapping, in a record beside a user's name. Digests, identifiers, names
in code, public keys and values under words that make them ids are left alone.

Every value is made up.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_labels import code_identifier, find_labelled, names_credential
from guards.detectors.credentials import credential_words
from guards.detectors.secrets import SecretsDetector
from guards.verdict import Finding


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        (  # an Alertmanager receiver: a hyphenated name no NAME=value form reads
            "receivers:\n  - name: oncall\n    pagerduty_configs:\n"
            "      - routing-key: 6af1bc25a47ee13a913ae342891dc96a\n        severity: critical",
            ["6af1bc25a47ee13a913ae342891dc96a"],
        ),
        (  # kaggle.json: a bare "key" beside a user's name
            '{"username":"mkeller84","key":"8ddff286cfe089d607a327567d3262db"}',
            ["8ddff286cfe089d607a327567d3262db"],
        ),
        (  # ESPHome: a bare "key" under a mapping named for an encryption key
            'api:\n  encryption:\n    key: "CgfOaNgu9CN2TJH6/q1c/hS8FAuYrjtjuPE/5dc/1JI="\nota:',
            ["CgfOaNgu9CN2TJH6/q1c/hS8FAuYrjtjuPE/5dc/1JI="],
        ),
        (  # a mail: the key alone on the line after the sentence that names it
            "> Hi Paul, as discussed here is your API key for the pilot environment:\n"
            "> YUE1CbkfcO03Yjki3PAdHr5K7vM9QuDXquLNb8t2lhgkVi3k\n> Base URL: https://pilot.example",
            ["YUE1CbkfcO03Yjki3PAdHr5K7vM9QuDXquLNb8t2lhgkVi3k"],
        ),
        (  # a numbered list under its heading, base64 starting with "/" included
            "Unseal keys (3 of 5 needed):\n  1: bzqUIlphoX7bn7h3F5oARuDQynPlPzHKMpB9aeZaS5L3\n"
            "  2: RasPcrpH69y9RDkxTCBjE5aqmyuQOlYMCDUAMgXUT+0R\n"
            "  3: /HWZUAxE6gyG8l/f4xm2X1WiiQwFzb/0Acer8gWN0JYf\n\nthen vault operator unseal",
            [
                "bzqUIlphoX7bn7h3F5oARuDQynPlPzHKMpB9aeZaS5L3",
                "RasPcrpH69y9RDkxTCBjE5aqmyuQOlYMCDUAMgXUT+0R",
                "/HWZUAxE6gyG8l/f4xm2X1WiiQwFzb/0Acer8gWN0JYf",
            ],
        ),
        (  # in a code fence under the heading
            "Le token secret (scope styles:write) :\n```\nq8RZ2vLk5TnW0pXc7YbM4sJd\n```",
            ["q8RZ2vLk5TnW0pXc7YbM4sJd"],
        ),
        (  # a heading in another language, with words after the key's word
            "Der API-Schlüssel für die Testumgebung, bitte sicher aufbewahren:\n"
            "YUE1CbkfcO03Yjki3PAdHr5K7vM9Qu",
            ["YUE1CbkfcO03Yjki3PAdHr5K7vM9Qu"],
        ),
        (  # Vault's and Consul's SecretID is a secret; the AccessorID beside it is not
            "AccessorID:       5c0e4a17-9b2d-4f6e-8a3c-1d7b9e2f4a60\n"
            "SecretID:         3a2784cb-fd28-4bb4-9f98-ddecff58a3a3\n",
            ["3a2784cb-fd28-4bb4-9f98-ddecff58a3a3"],
        ),
        (  # a provider's name before "key"
            "Mailgun key: 5f0a9c3e71d24b86a0c9e7f3b1d5a2e8-3c2a1b0d",
            ["5f0a9c3e71d24b86a0c9e7f3b1d5a2e8-3c2a1b0d"],
        ),
        (  # a sentence that ends in the word, then "is"
            "ok the new token is Zk4pQ9wLr2XvB7nT5mYc8JsD and it expires friday",
            ["Zk4pQ9wLr2XvB7nT5mYc8JsD"],
        ),
    ],
)
def test_a_key_after_a_label_naming_it_is_found_value_only(text: str, values: list[str]) -> None:
    assert [v for _, v in found(text)] == values


@pytest.mark.parametrize(
    "text",
    [
        # digests and identifiers under words that make them so
        "commit 3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a rotated the API key",
        "SHA256 fingerprint of the signing key:\n3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "api_key_id: 7f3a9c2e1b8d4f60a5c7",
        "nextPageToken: CiAKGjBpNDd2Nmp1Zm5oYnhkMjJ4dGs",
        "cache key: user_8f3a2b9c4d5e6f70",
        "Idempotency-Key: 5f2b8c1e-7a94-4d3b-9e60-2c8a1f7b3d95",
        "public key:\nMCowBQYDK2VwAyEAq9vX2mT7pL4sR8nB0cW5zY1kJ3dF6hG",
        "token_accessor    8yTKYq2nLp5vR0mX3cW7zB9d",
        "secretName: db-credentials-7f9c8d6b5",
        # "Password for user" labels the user, not a password
        "Password for user 5e2a7c90-11d4-4b0e-a1f3-77c2d9e0a6b8: ********",
        # "key" alone means a credential only after a word that makes it one
        "Enter this key instead:\n7OZS7372BI2IGPAH9QX1",
        "the translation key is app_header_title_v2_8fa93b2c",
        # names in code: a call's argument, a class, a constant passed on
        "self.embed_tokens = MiniCPM3ScaledWordEmbedding(config)",
        "return x.embed_tokens(MiniCPM3ScaledWordEmbedding)",
        "activation_key = kFp8Dynamic128Sym",
        '"nvfp4_per_token": kNvfp4DynamicToken,',
        # publishable keys are public by design
        '<string name="mapbox_access_token">pk.eyJ1IjoiZXhhbXBsZSIsImEiOiJjbGFiYyJ9.'
        "-1J2nFboUmnsuw_GAvL-0h</string>",
        # a URL's path and an option are no values
        "token endpoint: https://auth.example.com/oauth2/v1/token/8f3a2b9c4d5e6f70aa",
        "the token flag: --token-file=/etc/app/token_8f3a2b9c4d5e6f70",
        # a placeholder and a masked value
        "API key:\nYOUR_API_KEY_GOES_HERE_1234",
        "secret: xxxxxxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("routing-key", "CREDENTIAL"),
        ("wireguard_private_key", "CREDENTIAL"),
        ("SecretID", "CREDENTIAL"),
        ("Unseal Key 1", "CREDENTIAL"),
        ("apikey", "CREDENTIAL"),
        ("db_password", "PASSWORD"),
        ("passphrase is", "PASSWORD"),
        ("api_key_id", None),
        ("nextPageToken", None),
        ("cache key", None),
        ("tokenizer", None),
        ("monkey", None),
        ("SSH key", None),
        ("Password for user", None),
    ],
)
def test_a_label_names_a_credential_by_its_last_credential_word(
    label: str, kind: str | None
) -> None:
    assert names_credential(label) == kind


def test_a_heading_may_say_more_after_its_credential_word() -> None:
    heading = "here is your API key for the pilot environment"
    assert names_credential(heading) is None
    assert names_credential(heading, heading=True) == "CREDENTIAL"


@pytest.mark.parametrize(
    ("value", "identifier"),
    [
        ("MiniCPM3ScaledWordEmbedding", True),
        ("load_balancer_config_v2", True),
        ("parseHttpResponseHeaders", True),
        ("YUE1CbkfcO03Yjki3PAdHr5K7vM9QuDXquLNb8t2lhgkVi3k", False),
        ("69lMbUh9omfrtOrOMNhpfbODqCDVW7m683Xh9x2r", False),
        ("CgfOaNgu9CN2TJH6/q1c/hS8FAuYrjt=", False),
    ],
)
def test_names_in_code_are_told_from_random_keys(value: str, identifier: bool) -> None:
    assert code_identifier(value) is identifier


def test_thousands_of_labelled_keys_are_each_found_once() -> None:
    """Hostile input: every line a labelled key, and one line of 2,000 runs under a label;
    each value is judged once (the label is read within 80 characters before it)."""
    lines = [f"api_key_{i}: {i:06d}Zk4pQ9wLr2XvB7nT5m" for i in range(3000)]
    assert len(found("\n".join(lines))) == 3000
    one_line = "token: " + " ".join(f"zk4pq9wLR2XVB7nT{i:06d}" for i in range(2000))
    assert len(found_labelled(one_line)) == 1  # only the first run stands after the label


def found_labelled(text: str) -> list[Finding]:
    low = text.lower()
    return find_labelled(text, low, credential_words(low))


def test_a_run_longer_than_a_key_is_no_value() -> None:
    assert found_labelled("token: " + "aB3" * 700) == []  # over 2,048 characters
    assert len(found_labelled("token: " + "aB3" * 80)) == 1


LONG_SESSION_TOKEN = (
    "IQoJb3JpZ2luX2VjEUckM+hQE6WPlQp0E/diqUMxnIO9wDp8eHGXWFK53UfSfZSfl0KpS2+aNIZtnjG1AMw9La3btc1"
    "EgeXHfyV3gTFTPTP446QaW9zrmQShxwArGq9nOTOyseLc0XHHcZyO/f6gpmk0lGaIuLdlRUvJ4fXIU6S6Sr3Jpc18Ig"
    "D/+uWLiCmWLAIp7hzV+NagY69PgySMIuAeu+wbyDy7Y3XwMtYgy12OFJTCtQtAwbwmZEfTGxIpVUW8DS4HojvErYS2"
) * 3


@pytest.mark.parametrize(
    ("text", "values"),
    [
        (  # a command's output: the lone value under a prompt line naming a key or a token
            "$ headscale preauthkeys create --user homelab --reusable\n"
            "7b2cd6045771102d822da9419c91d1a0149f50b2a85743ac\n$ tailscale up",
            ["7b2cd6045771102d822da9419c91d1a0149f50b2a85743ac"],
        ),
        (
            "root@cp1:~# kubeadm token create\nabcdef0123456789abcdef0123\n",
            ["abcdef0123456789abcdef0123"],
        ),
        (  # an aside between the label and its colon
            "RADIUS shared secret (for the branch routers only): ZIWLAEsAXQbdpZq6AwLuLFsI\nok",
            ["ZIWLAEsAXQbdpZq6AwLuLFsI"],
        ),
        (  # a value wrapped in a conversion: the name before "=" is the label
            'c.JupyterHub.cookie_secret = bytes.fromhex("13c85f8ab7bc71c4b306b7eb24cdaccbb")',
            ["13c85f8ab7bc71c4b306b7eb24cdaccbb"],
        ),
        (
            '+var signingKey = []byte("fjGj1AWBQcINvOpjfAa82dxXaVI5QCScQHmw")',
            ["fjGj1AWBQcINvOpjfAa82dxXaVI5QCScQHmw"],
        ),
        (
            "  'passwordsalt' => 'xUh3OszV6QwxNdmnVJccneCmtIH9QqCT',",
            ["xUh3OszV6QwxNdmnVJccneCmtIH9QqCT"],
        ),
        (  # a session cookie, its name and value run together
            '"Cookie": "loom_session=bxLynJo22gLmfNnKO21kXuBKj4tkdE6-DTGh; theme=dark"',
            ["bxLynJo22gLmfNnKO21kXuBKj4tkdE6-DTGh"],
        ),
        (
            "JSESSIONID=8F3A2B9C4D5E6F70A1B2C3D4E5F60718; Path=/",
            ["8F3A2B9C4D5E6F70A1B2C3D4E5F60718"],
        ),
        (  # an AWS session token runs past a thousand characters
            f'"SessionToken": "{LONG_SESSION_TOKEN}",',
            [LONG_SESSION_TOKEN],
        ),
    ],
)
def test_more_labels_and_forms_of_a_labelled_key(text: str, values: list[str]) -> None:
    assert [v for _, v in found(text)] == values


@pytest.mark.parametrize(
    "text",
    [
        # a heading's value must be alone on its line: .pgpass's field list over its line
        "# hostname:port:database:username:password\n"
        "pg-reporting.c7xk2ab9qz1e.eu-west-1.rds.amazonaws.com:5432:reporting:analyst:*",
        # a prompt line naming no credential
        "$ openssl rand -hex 16\n9f86d081884c7d659a2feaa0c55ad015\n",
        "$ git rev-parse HEAD\n3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a\n",
        # a query string's parameter that names nothing secret
        "https://x.example/cb?code_challenge_method=S256&state=8F3A2B9C4D5E6F70A1B2",
    ],
)
def test_more_look_alikes_are_left_alone(text: str) -> None:
    assert found(text) == []
