"""Backup and recovery codes listed under a line that names them
(guards/detectors/credential_codes.py): every code of the list is found, and only under such
a heading; a line still arriving in the list is held from its start.

Every value is made up.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_codes import code_block_start, open_code_start
from guards.detectors.secrets import SecretsDetector


def found(text: str) -> list[str]:
    return [text[f.start : f.end] for f in SecretsDetector().find(text)]


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (  # a support chat: two codes a line
            "my 2FA app is gone. here are the backup codes you gave me when I signed up:\n"
            "q7978-nw2am  8psr0-zcb52\n3dlje-9o884  df46p-iqn4j\nmy login email is below",
            ["q7978-nw2am", "8psr0-zcb52", "3dlje-9o884", "df46p-iqn4j"],
        ),
        (  # a blank line under the heading, list markers, codes with an inner blank
            "Recovery codes:\n\n- 1234 5678\n- 9012 3456\n\nThanks",
            ["1234", "5678", "9012", "3456"],
        ),
        (  # in a code fence; no colon after the heading
            "GitHub recovery codes\n```\na1b2c-3d4e5\nf6g7h-8i9j0\n```\nok",
            ["a1b2c-3d4e5", "f6g7h-8i9j0"],
        ),
        (  # other languages
            "Meine Backup-Codes:\n8812-3301\n7745-0092\n",
            ["8812-3301", "7745-0092"],
        ),
        ("Códigos de respaldo:\n1. 38120477\n2. 99013526\n", ["38120477", "99013526"]),
    ],
)
def test_codes_under_a_heading_naming_them_are_each_found(text: str, codes: list[str]) -> None:
    assert found(text) == codes


@pytest.mark.parametrize(
    "text",
    [
        # no heading naming codes: order numbers, dates, a tracking list
        "Order numbers:\n12345-67890\n55120-33018\n",
        "Release dates:\n2026-12-07\n2027-01-15\n",
        # a line with other words ends the list; a blank line after codes ends it too
        "Backup codes:\nplease rotate them after use 1234\n5678 9012",
        "Backup codes:\n1234 5678\n\n9012 3456 are the lottery numbers",
        # words without a digit are no codes
        "Recovery codes:\nalpha bravo\ncharlie delta\n",
        # a sentence about codes, nothing listed
        "How do I generate new recovery codes for my account?",
    ],
)
def test_look_alikes_are_no_codes(text: str) -> None:
    found_codes = found(text)
    assert "12345-67890" not in found_codes
    if "lottery" in text:
        assert found_codes == ["1234", "5678"]
    else:
        assert found_codes == []


def test_a_line_arriving_in_a_list_is_held_from_its_start() -> None:
    head = "Recovery codes:\n1234 5678\n"
    assert code_block_start(head) == 0
    assert open_code_start(head + "9012 34") == len(head)
    assert open_code_start(head + "9012 and words") is None
    assert open_code_start("Order numbers:\n1234 5678\n9012 34") is None
    assert code_block_start("Recovery codes:\n\n") == 0  # a blank line before the first code
    assert code_block_start("Recovery codes:\n1234 5678\n\n") is None  # one after ends it


def test_a_long_list_stops_at_its_bound() -> None:
    text = "Backup codes:\n" + "".join(f"{i:04d} {i + 5000:04d}\n" for i in range(1, 40))
    assert len(found(text)) == 2 * 20  # MAX_CODE_LINES lines of two codes
