"""Credentials in a table's column (guards/detectors/credential_columns.py): Markdown, wiki,
TSV and CSV tables whose header names a password, key, secret or token column. Found value
only; masks, notes, placeholders, code that looks like a table and non-secret columns left
alone; a row still arriving is held.

Every value is made up.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_columns import open_column_start
from guards.detectors.secrets import SecretsDetector


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        (
            "| System | Login | Password | Owner |\n|---|---|---|---|\n"
            "| Jira | svc-jira | Maple$Dune-4410 | IT |\n| Grafana | admin | gr4f-Admin!! | SRE |\n"
            "| Okta break-glass | bg01 | stored in the safe, envelope 3 | CISO |",
            ["Maple$Dune-4410", "gr4f-Admin!!"],
        ),
        (  # a qualifier before the word; a cell's note is not a password
            "| host | iLO user | iLO pass |\n|---|---|---|\n|"
            " gpu-a01 | Administrator | HPiLO-8813-ax |\n"
            "| gpu-a03 | Administrator | (factory default, on sticker) |",
            ["HPiLO-8813-ax"],
        ),
        (  # Confluence: the header's cells between "||"
            "|| Environment || Host || API key || Rotated ||\n"
            "| staging | api.stg.example.app | aR41RfsMreTC1RS9wmkEjNlZptAXjkQJ | 2026-10-02 |\n"
            "| production | api.example.app | cloVKJ7s9AjTUlpiVfaNLGcPMmyjXLMi | 2026-11-19 |\n"
            "| sandbox (public docs) | sandbox.example.app | demo-key-0000 | never |",
            ["aR41RfsMreTC1RS9wmkEjNlZptAXjkQJ", "cloVKJ7s9AjTUlpiVfaNLGcPMmyjXLMi"],
        ),
        (  # a spreadsheet pasted as TSV
            "Account\tUsername\tPassword\tURL\n"
            "AWS root\troot@example.io\t9vL!eQz#2TmA7pXw\thttps://signin.example.com\n"
            "Namecheap\texamplelabs\tNc!2026example\thttps://namecheap.example",
            ["9vL!eQz#2TmA7pXw", "Nc!2026example"],
        ),
        (  # CSV: a quoted field may hold the delimiter; masks and references are no values
            'user,password,note\nalice,"Pa,ss1!",first\nbob,****,masked\ncarl,${PW},env',
            ["Pa,ss1!"],
        ),
        (  # backticks around the value; a cache key's name is no key
            "| Integration | Key | Scope |\n|---|---|---|\n"
            "| PagerDuty | `u+JE6fOpCPw4krlE5ifg` | read-only"
            " |\n| Cache | primary_cache_key_v2 | x |",
            ["u+JE6fOpCPw4krlE5ifg"],
        ),
        ("Benutzer;Kennwort\nmaria;Sonnen#Blume7", ["Sonnen#Blume7"]),
    ],
)
def test_a_credential_column_is_found_value_only(text: str, values: list[str]) -> None:
    assert [v for _, v in found(text)] == values


@pytest.mark.parametrize(
    "text",
    [
        # columns that hold no secret though they end in such a word
        "| name | public key | key ID |\n|---|---|---|\n| ops"
        " | AAAAC3NzaC1lZDI1NTE5AAAA | 4F2A9C1B7D3E8F60 |",
        "| Model | Max tokens | Input token price |\n|---|---|---|\n| m1 | 128000 | 0.0000025 |",
        "| Key | Value |\n|---|---|\n| timeout | 30 |\n| retries | 5 |",
        "| test | pass/fail |\n|---|---|\n| login | PASS |",
        # code with trailing commas is no CSV: a tuple's names over values
        "return (\n    match.weight_quant_key,\n    match.activation_quant_key,\n"
        "    QuarkNvfp4MoEMethod,\n)",
        # a masked or shortened value
        "| Service | Token |\n|---|---|\n"
        "| Grafana | glsa_\u2022\u2022\u2022\u2022\u2022\u2022_3f0a1b2c"
        " |",
        "| Service | Secret |\n|---|---|\n"
        "| Twilio | SK\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u20223f0a"
        " |",
        # a header without a table under it
        "Password | Notes\n\nThe password goes in the vault.",
    ],
)
def test_columns_that_hold_no_secret_are_left_alone(text: str) -> None:
    assert found(text) == []


def test_a_row_still_arriving_under_a_credential_header_is_held_from_its_start() -> None:
    head = "| System | Password |\n|---|---|\n"
    text = head + "| Grafana | gr4f-Adm"
    assert open_column_start(text) == len(head)
    assert open_column_start("| System | Owner |\n|---|---|\n| Grafana | SR") is None
    assert open_column_start("no table here") is None


def test_rows_far_below_their_header_are_read_as_far_as_a_stream_reads_back() -> None:
    """Past MAX_CHARS_ABOVE a stream no longer reads the header again: the whole text stops
    there too, so both mask the same cells."""
    rows = "".join(f"| host{i:04d} | Pw!{i:04d}xyz |\n" for i in range(600))
    text = "| Host | Password |\n|---|---|\n" + rows
    values = [v for _, v in found(text)]
    assert values[:2] == ["Pw!0000xyz", "Pw!0001xyz"]
    assert len(values) < 600
