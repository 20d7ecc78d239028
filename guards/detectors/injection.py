"""Prompt-injection / jailbreak detector: phrase rules plus a shipped linear classifier.

The rules catch the classic phrasings with certainty; the classifier (hashed word n-grams,
logistic regression, trained by `guards/train_injection.py`) catches the long role-play
jailbreaks the rules miss. Weights live in guards/data/injection_model.npz.
"""

from __future__ import annotations

import array
import functools
import math
import operator
import re
from pathlib import Path

from guards.detectors.injection_features import feature_set
from guards.detectors.npz_vector import read_vector
from guards.verdict import Finding

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "injection_model.npz"


def _alternation(words: str) -> str:
    """`words` ("a|b|...") as one regex alternation with shared prefixes factored out
    ("re(?:cite|peat|veal)"): re tries an alternation's branches one by one at every position,
    so a factored one scans a KB about a quarter faster. Same matches as "(?:a|b|...)"."""

    def build(suffixes: list[str]) -> str:
        optional = "" in suffixes
        by_first: dict[str, list[str]] = {}
        for word in suffixes:
            if word:
                by_first.setdefault(word[0], []).append(word[1:])
        parts = [re.escape(c) + build(sorted(set(rest))) for c, rest in sorted(by_first.items())]
        if not parts:
            return ""
        body = parts[0] if len(parts) == 1 and not optional else "(?:" + "|".join(parts) + ")"
        return body + "?" if optional else body

    return "(?:" + build(sorted(set(words.split("|")))) + ")"


_EXTRACT_VERB = (
    r"\b"
    + _alternation(
        "reveal|print|show|repeat|output|tell me|give me|leak|display|dump|paste|recite|quote|"
        "spell out|write out|copy|echo|disclose|share|send me|provide|spill|encode|translate|"
        "what's|what is|what are|what was|what were|what does|what did|which"
    )
    + r"\b"
)
_COPY_VERB = (
    r"\b"
    + _alternation(
        "print|output|repeat|echo|dump|return|copy|paste|show|display|tell me|write out|recite|"
        "what is written|quote"
    )
    + r"\b"
)
# What only a model's own setup is called, and (after "your" and at most two of these
# adjectives only) what else may be.
_SYSTEM_NOUN = (
    r"system[ -](?:prompt|message|instructions?)|developer (?:message|instructions?|prompt)|"
    r"pre-?prompt|(?:hidden|secret|confidential|startup|setup|initiali[sz]ation|configuration)"
    r" (?:prompt|instructions|message|preamble|rules|guidelines)"
)
_ADJECTIVE = (
    r"own|full|exact|complete|entire|whole|original|initial|first|active|current|actual|real|"
    r"hidden|secret|confidential|starting|opening"
)
_ANY_NOUN = r"instructions|prompt|rules|preamble|guidelines|configuration|setup message"
_DEVICE = (
    "iphone|ipad|ios|android|phone|device|console|kindle|firmware|router|playstation|ps4|ps5|"
    "switch|xbox|chrome|browser|windows"
)
# Each rule with the literal substrings (of the lower-cased text) one of which every match
# contains. Checking them with `in` (C speed, ~1 µs per KB) before running the rule keeps
# benign prompts from paying for every `.{0,40}` scan (~400 µs per KB for the first ten rules,
# measured here); the rules run on the lower-cased text, so they need no IGNORECASE.
_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("ignore", "disregard", "forget", "override", "bypass"),
        r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}"
        r"\b(?:previous|prior|above|earlier|preceding|all|your|the)\b.{0,30}"
        r"\b(?:instructions?|prompts?|rules|directives|guidelines)",
    ),
    # System-prompt extraction: an ask to print, repeat or tell what the model was given. The
    # target needs "your", or "the" with a system-only noun not followed by a topic ("the
    # system prompt for a bakery bot", "the initial instructions for the printer" are ordinary
    # asks, and so are "what is a system prompt?" and "review my system prompt").
    (
        ("prompt", "instruction", "rules", "message", "preamble", "guidelines", "configuration"),
        _EXTRACT_VERB + r".{0,40}"
        r"(?:(?<!\bas )(?<!\binto )(?<!\bto )(?<!\bfor )(?<!\bwith )\byour "
        r"(?:(?:[\w'-]+ ){0,2}?(?:" + _SYSTEM_NOUN + r")|(?:(?:" + _ADJECTIVE + r") ){0,2}"
        r"(?:" + _ANY_NOUN + r"))\b(?!\s+(?:for|of|on|about|regarding|when)\b)"
        r"|\bthe (?:[\w'-]+ ){0,2}?(?:" + _SYSTEM_NOUN + r")"
        r"(?!\s+(?:for|of|in|on|about|to|template|example|and|is|that|which|role)\b))",
    ),
    (
        ("prompt", "message", "instructions"),
        r"\b" + _alternation("print|reveal|dump|leak|output|display|show|spill") + r"\s+(?:me\s+)?"
        r"(?:the\s+)?(?:(?:above|preceding|previous|initial|original|hidden)\s+)?"
        r"(?:system[ -](?:prompt|message|instructions)|prompt\b(?!\s+(?:for|of|on|to|that)\b)"
        r"|above (?:prompt|instructions))",
    ),
    (("repeat ",), r"\brepeat (?:the|all)? ?(?:words|text|everything) (?:above|before)"),
    (
        ("above", "before", "preceding", "prior to"),
        _COPY_VERB + r".{0,30}\b(?:everything|all (?:of )?(?:the )?(?:text|words|content|messages)"
        r"|the (?:text|words|content|messages))\b.{0,30}?"
        r"\b(?:above|before|preceding|prior to) (?:this|my|the (?:user|first))\b",
    ),
    (
        ("beginning of", "start of", "top of", "before the user", "before my first"),
        r"\b(?:print|output|repeat|show|display|tell me|what (?:is|was|appears)|quote|paste)\b"
        r".{0,40}\b(?:(?:the )?(?:beginning|start|top) of (?:this|the) (?:conversation|chat|"
        r"context|session|thread)|before (?:the user|my first message))",
    ),
    (
        (
            "were you",
            "have you",
            "what did ",
            "what do ",
            "been given",
            "were given",
            "you received",
            "you are following",
            "you are operating",
            "you are running",
        ),
        r"\bwhat (?:instructions|rules|guidelines|directions) (?:were|have) you (?:been )?"
        r"(?:given|told)\b"
        r"|\bwhat (?:were|have) you (?:been )?(?:told|instructed|programmed)\b.{0,20}?"
        r"\b(?:before|at the (?:start|beginning)|initially|first|by (?:your|the) |not to|to (?:say"
        r"|keep|hide))"
        r"|\bhow (?:were|have) you (?:been )?(?:instructed|programmed|configured)\b"
        r"|\bwhat (?:did|do) (?:your|the) (?:developers?|creators?|operators?|admins?|"
        r"administrators?|makers?|owners?|company) (?:tell|say|write|instruct)"
        r"|\b(?:instructions|rules|prompt) (?:that )?you (?:were given|have been given|'ve been "
        r"given|received|are following|are operating under|are running (?:on|with|under))\b",
    ),
    # The same asks in other languages: "ignore the previous instructions" and "your system
    # prompt / initial instructions" in Spanish, French, German, Italian, Portuguese, Dutch
    # (not a bare "your instructions": "ich folge deinen Anweisungen" is an ordinary sentence).
    (
        ("ignor", "negeer"),
        r"\b(?:ignora|ignore[sz]?|ignoriere[n]?|negeer)\b.{0,20}"
        r"\b(?:instrucciones|instructions|anweisungen|istruzioni|instruç[õo]es|instructies)\s+"
        r"(?:anteriores|previas|pr[ée]c[ée]dentes|vorherigen|bisherigen|vorigen|precedenti|"
        r"eerdere|vorige)"
        r"|\b(?:ignoriere[n]?|negeer)\b.{0,20}\b(?:vorherigen|bisherigen|vorige|eerdere)\s+"
        r"(?:anweisungen|instructies)",
    ),
    (
        (
            "sistema",
            "système",
            "systeme",
            "systemprompt",
            "system-prompt",
            "systeemprompt",
            "instrucciones ",
            "instructions initiales",
            "instructions d'origine",
            "instructions cach",
            "anweisungen",
            "istruzioni ",
            "instruç",
        ),
        r"\b(?:tu|ton|tes|tus|dein(?:e[nrs]?)?|il tuo|le tue|o seu|seu|suas|je|jouw)\s+"
        r"(?:prompt (?:del|de) sistema|prompt syst[èe]me|system-?prompt|systeemprompt|"
        r"prompt di sistema|instrucciones (?:iniciales|originales|ocultas)|"
        r"instructions (?:initiales|d'origine|cach[ée]es)|"
        r"(?:urspr[üu]nglichen|anf[äa]nglichen|versteckten|geheimen) anweisungen|"
        r"istruzioni (?:iniziali|originali|nascoste)|instruç[õo]es (?:iniciais|originais|ocultas))",
    ),
    (
        ("do anything now", "developer mode", "jailbr", "dan mode", "god mode", "evil mode"),
        r"\b(?:do anything now|dan mode|god mode|evil mode)\b"
        # Phones, consoles and browsers have a developer mode and are jailbroken too: not when
        # one is named beside it ("What is a jailbreak on an iPhone?").
        r"|(?=developer mode|jailbr)" + "".join(f"(?<!{d} )" for d in _DEVICE.split("|")) + r"\b"
        r"(?:developer mode|jailbr(?:eak|oken|eaking))\b"
        r"(?!.{0,40}\b(?:" + _DEVICE + r")s?\b)",
    ),
    (
        ("you are ",),
        r"\byou are (?:now )?(?:dan|free from|no longer bound|unrestricted|unfiltered|"
        r"an? ai without)",
    ),
    (
        ("ethical", "moral", "safety", "content"),
        r"\b(?:without|no|free of|ignore (?:all|any|your)) (?:any )?"
        r"(?:ethical|moral|safety|content)"
        r" (?:guidelines|restrictions|filters|limits|policies|constraints)",
    ),
    (
        ("pretend ",),
        r"\bpretend (?:that )?you (?:are|have) (?:no|not|an? (?:ai|model) (?:with no|without))",
    ),
    (("instruction",), r"\b(?:new|updated) (?:system )?instructions?\s*:"),
    (("from now on",), r"\bfrom now on,? you (?:will|are|must|shall)\b"),
    (("stay in character",), r"\bstay in character\b"),
)
RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (hints, re.compile(pattern, re.DOTALL)) for hints, pattern in _RULES
)


# The four non-ASCII letters that re's IGNORECASE matches to ASCII letters; folding them first
# makes `text.lower()` + case-sensitive rules match exactly what IGNORECASE rules would
# ("\u0131gnore previous instructions", with a dotless i, included).
_IGNORECASE_EXTRAS = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"), ("\u212a", "k"))


def _lowered(text: str) -> str:
    if not text.isascii():
        for special, ascii_letter in _IGNORECASE_EXTRAS:
            if special in text:
                text = text.replace(special, ascii_letter)
    return text.lower()


def rules_match(text: str) -> bool:
    """True when any phrase rule matches (case-insensitively) somewhere in the text."""
    lowered = _lowered(text)
    contains = lowered.__contains__
    return any(
        any(map(contains, hints)) and pattern.search(lowered) is not None
        for hints, pattern in RULES
    )


@functools.cache
def load_model(path: Path = MODEL_PATH) -> tuple[array.array[float], float]:
    """The shipped weights (loaded once per process, without numpy: npz_vector.py says why)."""
    weights = read_vector(path, "weights")
    (bias,) = read_vector(path, "bias")
    return weights, bias


def weighted_sum(weights: array.array[float], indices: set[int]) -> float:
    """The weights at `indices`, summed (one C call fetches them: half the time of a map)."""
    if len(indices) < 2:  # itemgetter of one index returns the item, not a tuple
        return sum(map(weights.__getitem__, indices))
    return float(sum(operator.itemgetter(*indices)(weights)))


def classifier_score(text: str, path: Path = MODEL_PATH) -> float:
    """Probability that the text is an injection/jailbreak, in [0, 1]."""
    weights, bias = load_model(path)
    z = bias + weighted_sum(weights, feature_set(text))
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


_WORD = re.compile(r"[^\W\d_]{2,}")
_MIN_WORDS = 3


def has_words(text: str) -> bool:
    """Whether the classifier has anything to read: a few hashed n-grams of digits and single
    letters can collide with attack features ("q 28 9" scored 0.7). No attack in the shared
    dev set has fewer than three words; the phrase rules still see every text."""
    return any(i >= _MIN_WORDS - 1 for i, _ in enumerate(_WORD.finditer(text)))


class InjectionDetector:
    """Flags the whole text when a rule fires or the classifier score reaches the threshold."""

    def __init__(
        self, threshold: float = 0.5, use_classifier: bool = True, use_rules: bool = True
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.threshold = threshold
        self.use_classifier = use_classifier
        self.use_rules = use_rules
        if use_classifier:
            load_model()

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if self.use_rules and rules_match(text):
            return [Finding("PROMPT_INJECTION", 0, len(text), 1.0)]
        if self.use_classifier and has_words(text):
            score = classifier_score(text)
            if score >= self.threshold:
                return [Finding("PROMPT_INJECTION", 0, len(text), round(score, 4))]
        return []

    def holdback(self, text: str, system_prompt: str = "") -> None:
        """Cannot say: the classifier reads the whole text and a rule may span ~150 characters,
        so a stream holds the policy's `hold_back_chars` for this guard."""
        return None
