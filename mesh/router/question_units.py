"""Units of measure written two ways, for the cache's question comparison (round 8).

"5 km" and "5 kilometres", "100g" and "100 grams", "98.6 °F" and "98.6 degrees Fahrenheit" ask
the same question; "5 km" and "5 miles", "100 °C" and "100 °F", "5G" and "5 grams" do not.

- question_form.py calls `unit_tokens` on the raw tokens: a number glued to a unit symbol is
  split ("10kg" -> "10 kg"; never a "g" after 2 to 6: "5G" is a network), "°F" / "degrees F"
  become "degrees fahrenheit" (and Celsius alike; "centigrade" is "celsius"), and "mph",
  "kph", "km/h" become "miles per hour" / "km per hour".
- cache_verify.py forgives an abbreviation against the full name or another abbreviation of
  the same unit ("ml" / "mL", `same_unit`), only where the abbreviation stands as a unit
  (`as_unit`): after a number, or "how many / much", or "per", or next to another unit
  ("miles to km"); "lb" / "pounds" only when the prompt is about weight (a pound is also
  money). Another unit, another number, or a unit on one side only stays a veto.
"""

from __future__ import annotations

import re

from mesh.router.question_fillers import Tok


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# unit: (abbreviations, full names). Abbreviations are matched on the lower-cased token except
# mixed-case ones ("mL"), which question_form keeps in their case. Not "m" (million, minute),
# "in" (a preposition), "l" (a letter), "c" / "f" alone (cents, grades): left unmatched.
_UNITS: dict[str, tuple[str, str]] = {
    "km": ("km kms", "kilometre kilometres kilometer kilometers"),
    "cm": ("cm cms", "centimetre centimetres centimeter centimeters"),
    "mm": ("mm", "millimetre millimetres millimeter millimeters"),
    "mi": ("mi", "mile miles"),
    "ft": ("ft", "foot feet"),
    "yd": ("yd yds", "yard yards"),
    "kg": ("kg kgs kilo kilos", "kilogram kilograms kilogramme kilogrammes"),
    "g": ("g", "gram grams gramme grammes"),
    "mg": ("mg", "milligram milligrams milligramme milligrammes"),
    "lb": ("lb lbs", "pound pounds"),
    "oz": ("oz", "ounce ounces"),
    "ml": ("ml mL", "millilitre millilitres milliliter milliliters"),
    "hr": ("hr hrs", "hour hours"),
    "min": ("min mins", "minute minutes"),
    "sec": ("sec secs", "second seconds"),
}
ABBREVIATIONS: dict[str, str] = {a: u for u, (abbr, _) in _UNITS.items() for a in abbr.split()}
FULL_NAMES: dict[str, str] = {f: u for u, (_, full) in _UNITS.items() for f in full.split()}
_UNIT_WORDS = frozenset(ABBREVIATIONS) | frozenset(FULL_NAMES) | {"fahrenheit", "celsius"}
# "a pound" is also money: "lb" / "pounds" are one unit only in a prompt about weight.
_MASS_CUES = _words(
    """weigh weighs weighed weight weights heavy heavier lighter lose lost gain gained loss kg
    kilo kilos kilogram kilograms gram grams ounce ounces oz stone"""
)
# Before an abbreviation: it stands as a unit ("how many km", "km per hour" is checked after).
_UNIT_CUES = _words("many much per")
# Before an abbreviation and after another unit: "miles to km", "km or miles".
_UNIT_LINKS = _words("to into in or and from vs versus")
_GLUED = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+|mL)$")
_NETWORK_G = frozenset("23456")  # "5G", "4g": mobile networks, not grams
_SPEEDS = {
    "mph": ("miles", "per", "hour"),
    "kph": ("km", "per", "hour"),
    "kmh": ("km", "per", "hour"),
}
_TEMPERATURES = {"f": "fahrenheit", "c": "celsius"}
_DEGREES = _words("° degree degrees deg")
_ABOUT_SYMBOLS = _words(
    """mean means meaning stand stands abbreviation abbreviations abbreviate abbreviated acronym
    short symbol symbols called name named spell spelt spelled pronounce write written say"""
)


def unit_tokens(toks: list[Tok]) -> list[Tok]:
    """The rewrites of the module docstring on question_form's tokens; quoted text is left
    alone."""
    make = Tok
    out: list[Tok] = []
    # "What does MPH stand for?", "Why is Celsius called centigrade?": the symbol is asked about.
    about_symbols = any(t.low in _ABOUT_SYMBOLS for t in toks)
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.quoted:
            out.append(t)
        elif m := _GLUED.match(t.low):
            number, unit = m.groups()
            glued = unit in ABBREVIATIONS or unit in _SPEEDS
            if glued and not (unit == "g" and number in _NETWORK_G):
                out += [make(number, number), make(unit, unit)]
            else:
                out.append(t)
        elif about_symbols:
            out.append(t)
        elif t.low in _SPEEDS:
            out += [make(w, w) for w in _SPEEDS[t.low]]
        elif t.low == "km" and _slash_h(toks, i):
            out += [make(w, w) for w in _SPEEDS["kph"]]
            i += 3
            continue
        elif t.low in _DEGREES and nxt is not None and not nxt.quoted and nxt.low in _TEMPERATURES:
            if t.low == "°" or nxt.raw.isupper():  # "degrees c" in lowercase may be a letter
                out += [make("degrees", "degrees"), make(_TEMPERATURES[nxt.low], nxt.raw)]
                i += 2
                continue
            out.append(t)
        elif t.low == "centigrade":
            out.append(make("celsius", t.raw))
        else:
            out.append(t)
        i += 1
    return out


def _measures(words: list[str], word: str) -> bool:
    """Another unit or a number elsewhere in the prompt: "weigh 2 litres in lbs"."""
    return any(w != word and (w in _UNIT_WORDS or w[:1].isdigit()) for w in words)


def _slash_h(toks: list[Tok], i: int) -> bool:
    return (
        i + 2 < len(toks)
        and toks[i + 1].low == "/"
        and toks[i + 2].low == "h"
        and not toks[i + 1].quoted
        and not toks[i + 2].quoted
    )


def same_unit(x: str, y: str) -> bool:
    """An abbreviation and the full name or another abbreviation of one unit ("km" /
    "kilometres", "ml" / "mL", "lb" / "lbs"); two full names ("mile" / "miles") stay apart."""
    for abbr, other in ((x, y), (y, x)):
        unit = ABBREVIATIONS.get(abbr)
        if unit is not None and (FULL_NAMES.get(other) or ABBREVIATIONS.get(other)) == unit:
            return True
    return False


def as_unit(words: list[str], word: str) -> bool:
    """Every `word` (an abbreviation or a full name) in `words` stands as a unit of measure."""
    if word in FULL_NAMES:
        return FULL_NAMES[word] != "lb" or any(w in _MASS_CUES for w in words)
    if ABBREVIATIONS.get(word) == "lb" and not any(w in _MASS_CUES for w in words):
        return False
    for i, w in enumerate(words):
        if w != word:
            continue
        before = words[i - 1] if i else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        before2 = words[i - 2] if i > 1 else ""
        if before[:1].isdigit() and before.replace(".", "").isdigit():
            if word == "g" and before in _NETWORK_G:
                return False
            continue
        if word in ("g", "min", "sec", "kilo", "kilos"):
            return False  # too common as a letter or a word: a number must stand before it
        if before in _UNIT_CUES or after == "per":
            continue
        if before in _UNIT_LINKS and (before2 in _UNIT_WORDS or _measures(words, word)):
            continue
        return False
    return True
