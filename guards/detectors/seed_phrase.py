"""Wallet recovery phrases: twelve to twenty-four words of the BIP-39 English wordlist in a row
(`clarify butter arrest critic crop crouch brain ...`), which restore a wallet whole.

Why a wordlist and no cue: a phrase is pasted with or without one ("this is what I wrote down
on paper"), and twelve words in a row all from the list's 2,048 (no "the", "and", "of", "to",
"is", no word under three letters) do not occur in prose or code of the benign sets (checked
on every set the project holds). The list is data (guards/data/bip39_english.txt, MIT, from
trezor/python-mnemonic; ATTRIBUTION.md), pinned by its sha256.

The finding is the run of words, separated by blanks, commas, newlines or a numbered list's
markers (`1. abandon 2. ability`). Streams: `open_phrase_start` holds a trailing run of list
words (a phrase arrives word by word; the run is released at the first word off the list), and
`phrase_reach` has the stream judge a held run with its words already released.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from itertools import repeat
from pathlib import Path

from guards.verdict import Finding

WORDLIST = Path(__file__).resolve().parents[1] / "data" / "bip39_english.txt"
WORDLIST_SHA256 = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
MIN_WORDS = 12
# a stream holds a trailing run of list words once two of them are words prose seldom uses
HOLD_UNCOMMON = 2
# list words that prose uses all the time (function words, numbers, everyday verbs): a run of
# them alone is never held
_COMMON = frozenset((
    "that", "you", "this", "have", "they", "will", "can", "what", "all", "when", "there", "one",
    "more", "about", "also", "into", "then", "only", "other", "just", "over", "any", "such",
    "like", "time", "make", "first", "way", "use", "very", "where", "much", "because",
    "between", "own", "under", "again", "same", "few", "another", "know", "people", "year",
    "good", "come", "want", "give", "find", "tell", "work", "call", "try", "ask", "need",
    "feel", "become", "leave", "put", "mean", "keep", "two", "three", "four", "five", "six",
    "seven", "eight", "nine", "ten", "twenty", "hundred", "thousand", "million", "above",
    "below", "before", "after", "during", "still", "never", "always", "often", "other", "each",
    "every", "many", "most", "some", "than", "here", "now", "today", "next", "last", "long",
    "great", "little", "right", "left", "high", "small", "large", "big", "old", "young", "able",
    "also", "back", "case", "day", "end", "fact", "group", "hand", "home", "life", "man", "number",
    "part", "place", "point", "problem", "program", "question", "school", "world", "would",
))  # fmt: skip
CUE_REACH = 200  # ... or from its first, after a word that announces a phrase this close
_CUE = re.compile(
    r"(?i:seed|mnemonic|recovery|passphrase|secret phrase|backup phrase|wallet|"
    r"frase|phrase|wörter|palavras|palabras|mots)"
)
# A development tool's published test phrase repeats one word ("test test ... junk", Hardhat's
# and Foundry's; "abandon ... about", BIP-39's own test vector): no wallet's, and left alone.
_PLACEHOLDER_WORDS = 3
_SEP = r"(?:[ \t]+|[ \t]*\r?\n[ \t]*)(?:(?:\d{1,2}[.)]|[-*\u2022])[ \t]+)?"
_TOKEN = re.compile(r"\S+")
_AS_BLANKS = ",=:\"'`"
# tokens as flags: "1" a list word, "m" a list marker, "0" anything else; a phrase is a run of
# MIN_WORDS "1"s with markers between (the text is split in C and each token looked up once:
# ~10 µs a KB; a regex over the text's words cost ~100)
_RUN = re.compile(rf"1(?:m?1){{{MIN_WORDS - 1},}}")
_BARE_RUN = "1" * MIN_WORDS
_LISTED_RUN = "1m1m1m"  # a numbered list's phrase holds this, whatever else it holds
_OPEN_WORDS = 24  # a trailing run is looked at back to this many words
_OPEN_REACH = 24 * 14  # characters: 24 words and their list markers
_MARKS = " \t\r\n0123456789.)-*\u2022"


@cache
def wordlist() -> frozenset[str]:
    data = WORDLIST.read_bytes()
    if hashlib.sha256(data).hexdigest() != WORDLIST_SHA256:
        raise RuntimeError(f"{WORDLIST} does not match its pinned sha256")
    return frozenset(data.decode().split())


@cache
def _flags() -> dict[str, str]:
    """Each list word's flag ("1") and each list marker's ("m"): tokens are looked up in C."""
    flags = dict.fromkeys(wordlist(), "1")
    for n in range(1, 25):
        flags[f"{n}."] = flags[f"{n})"] = "m"
    for bullet in ("-", "*", "\u2022"):
        flags[bullet] = "m"
    for word in wordlist():  # the phrase's last word, before a full stop
        flags[word + "."] = "1"
    return flags


@cache
def _prefixes() -> frozenset[str]:
    return frozenset(w[:i] for w in wordlist() for i in range(1, len(w)))


def find_phrases(text: str) -> list[Finding]:
    """Runs of MIN_WORDS list words or more."""
    # "clarify, butter, ...", `MNEMONIC="clarify ..."`: separators read as blanks (the same
    # length, so the same places)
    spaced = text
    for separator in _AS_BLANKS:
        if separator in spaced:
            spaced = spaced.replace(separator, " ")
    tokens = spaced.split()
    if len(tokens) < MIN_WORDS:
        return []
    flags = "".join(map(_flags().get, tokens, repeat("0")))
    if _BARE_RUN not in flags and _LISTED_RUN not in flags:  # (C speed; the regex ~7 µs)
        return []
    runs = [m.span() for m in _RUN.finditer(flags)]
    if not runs:
        return []
    spans = [m.span() for m in _TOKEN.finditer(spaced)]  # the tokens' places, as split gave them
    found = []
    for i, j in runs:
        # list words that name the phrase ("seed phrase: ...", `words=...`) are its label, and
        # what follows them must be a phrase on its own
        for k in range(i, min(i + 3, j)):
            if text.startswith((":", "="), spans[k][1]):
                i = k + 1
                break
        if j - i >= MIN_WORDS and len(set(tokens[i:j])) > _PLACEHOLDER_WORDS:
            found.append(Finding("PASSWORD", spans[i][0], spans[j - 1][1]))
    return found


def open_phrase_start(text: str) -> int | None:
    """Where a trailing run of list words that may still grow into a phrase begins (None: the
    text does not end in one). After a word that announces a phrase ("seed", "mnemonic",
    "recovery phrase", ... within CUE_REACH characters) the run is held from its first word;
    otherwise once HOLD_UNCOMMON of its words are list words prose seldom uses: prose makes
    runs of common list words all the time ("you can also make"), and a stream must not stall
    on them, so there a phrase's first word may leave before the run is held (11 of its 128
    bits; a prompt or a unary answer, judged whole, is masked whole). The last word, while it
    may still grow, may be a list word's first letters (it counts for nothing)."""
    base = max(len(text) - _OPEN_REACH, 0)
    tail = text[base:]
    stripped = tail.rstrip()
    if not stripped or not stripped[-1].islower():
        return None
    growing = len(stripped) == len(tail)
    words = wordlist()
    pos = len(stripped)
    if growing:
        # a word still growing is held by the trailing token run anyway: only a list word
        # before it can start a run worth holding (most chunks of prose end here)
        blank = max(stripped.rfind(" "), stripped.rfind("\n"), stripped.rfind("\t"))
        before = stripped[: max(blank, 0)].rstrip(_MARKS)
        cut = max(before.rfind(" "), before.rfind("\n"), before.rfind("\t"))
        if blank < 0 or before[cut + 1 :] not in words:
            return None
    start = None
    count = 0
    for i in range(_OPEN_WORDS):
        blank = max(
            stripped.rfind(" ", 0, pos), stripped.rfind("\n", 0, pos), stripped.rfind("\t", 0, pos)
        )
        word = stripped[blank + 1 : pos]
        listed = word in words or (i == 0 and growing and word in _prefixes())
        if not listed:
            break
        start = base + blank + 1
        count += word in words and word not in _COMMON  # a growing prefix counts for nothing
        pos = len(stripped[: max(blank, 0)].rstrip(_MARKS))
        if blank < 0 or pos == 0:
            break
    if start is None:
        return None
    if count >= HOLD_UNCOMMON or _announced(text, start):
        return start
    return None


def _announced(text: str, start: int) -> bool:
    """Whether a word that announces a recovery phrase stands within CUE_REACH before `start`."""
    return _CUE.search(text, max(start - CUE_REACH, 0), start) is not None


def phrase_reach(released: str, window: str) -> int:
    """How much released text a stream reads before a held `window` (`released`: the text
    released before it) that goes on a run of list words released before it, or that follows a
    word announcing a phrase: the run's first words, and the announcing word, are judged with
    it."""
    words = wordlist()
    first = window.split(None, 1)[0] if window.strip() else ""
    if first not in words and not (first and first in _prefixes()):
        return 0
    recent = released[-CUE_REACH:]
    last = recent.rstrip(_MARKS)
    last = last[max(last.rfind(" "), last.rfind("\n"), last.rfind("\t")) + 1 :]
    if last in words or _CUE.search(recent) is not None:
        return _OPEN_REACH + CUE_REACH
    return 0
