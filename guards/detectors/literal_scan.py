"""Which of a fixed set of literals a text contains, without one scan of the text per literal.

A literal can only be in a text that holds each of its characters, so each literal is filed
under its rarest character (rarest in ordinary prose, by a fixed ranking) and looked for only
when the text holds that character: one `in` test of a single character (a memchr) rules out a
whole group. The secrets guard looks for 55 provider literals ("AKIA", "ghp_", "sk-", ...)
in every prompt: one `in` per literal cost ~37 µs on a 1 KB prompt of prose, gated this way
~9 µs (measured here); the answer is the same by construction.
"""

from __future__ import annotations

from collections.abc import Iterable

# Characters from the most to the least common in English prose (letters by their usual
# frequency, then capitals, digits and punctuation); one that is not listed is rarer than all.
# Only the choice of gate depends on it: a wrong guess costs time, never a missed literal.
_COMMONNESS = " etaoinsrhldcumfpgwyb,.vkTSAICxMBjHWPqDRLNEFGOz0U1K2Y-3V4:J5Q6X7Z8/9"


def _rarity(char: str) -> int:
    rank = _COMMONNESS.find(char)
    return len(_COMMONNESS) if rank < 0 else rank


class LiteralScan:
    """The literals of `literals` that a text contains (case-sensitive, like `in`)."""

    def __init__(self, literals: Iterable[str]) -> None:
        groups: dict[str, list[str]] = {}
        for literal in dict.fromkeys(literals):
            if not literal:
                raise ValueError("an empty literal is in every text: leave it out")
            groups.setdefault(max(literal, key=_rarity), []).append(literal)
        self._groups = tuple((gate, tuple(members)) for gate, members in groups.items())

    def present(self, text: str) -> frozenset[str]:
        contains = text.__contains__
        return frozenset(
            literal
            for gate, members in self._groups
            if gate in text
            for literal in members
            if contains(literal)
        )
