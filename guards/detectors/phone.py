"""Phone numbers: the PII detector's loosest entity, so its own rules.

A number's shape (PHONE: separated groups, "+" and a country code, a bracketed area code), the
forms only phone numbers take (international, "00", trunk "0", area code and "/"), and cue words
before ("Phone:", "call me at") or after ("office", "(mobile)") a number that the shape rules
alone refuse; dates, decimals, ranges, sums and pairs of numbers are refused. Linear in the text:
overlaps are found by bisection over the sorted shape matches.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from guards.detectors.table_column import column_header
from guards.verdict import Finding

# A phone number starts with "+", "(" or a digit; the lookbehinds after the first character
# pick the branch that the original optional groups would have taken.
# Chinese, Japanese and Korean text runs into a number without a space ("手机139 8180 1359",
# "번호는 010-2300-9453이고"): their letters do not join a number the way Latin ones do.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
JOINING = rf"[^\W{CJK}]"  # a letter, digit or "_" that makes a number part of a word
# An extension, in any case: "x214", "Ext. 215", "extension 3", Spanish "anexo", Portuguese
# "ramal", German "Durchwahl", French "poste".
EXTENSION_WORDS = r"x|ext\.?|extension|anexo|ramal|durchwahl|poste"
PHONE = re.compile(
    rf"[+(\d](?<!{JOINING}.)(?<!\+.)"
    r"(?:(?<=\+)\d{8,15}(?!\d)"
    r"|(?<=\+)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}"
    r"|(?<=\()\d{1,4}\)[ .-]?\d{2,5}"
    r"|(?<=\d)\d{1,4})"
    rf"(?:[ .-]\d{{2,5}}){{0,4}}(?:,?\s?(?i:{EXTENSION_WORDS})\s?\d{{1,5}}|;ext=\d{{1,5}})?"
    rf"(?!{JOINING}|\.\d)"
)
# (Not before ".<digit>": "255.255.255" of a netmask, "1.234.567" of a longer dotted number.)
# A number right after a word that says it is one ("Phone: 451 5986", "Desk: 5403926876",
# "answering at 99 668472", "call me on 07700 900123", "stop receiving messages to ..."): the
# shape rules above refuse unseparated runs and two bare groups (prices, house numbers), but
# after such a word they are phone numbers, as Presidio's context enhancer treats them. The
# word must start at most PHONE_CONTEXT_GAP characters before the number, with nothing but
# punctuation, "me"/"us" and "at", "on", "is", "to" or "from" ("SMS from 2029178834", "a
# missed call from ...") between, or, after a verb that reaches
# someone, up to three words and then "at" or "on" ("call Anna Berg at ..."). "number" alone
# is not a cue (order, invoice and ticket numbers); "my number is", "your number:" are.
PHONE_CUE = re.compile(
    r"(?:(?<![^\W_])(?:phone|telephone|tel|mobile|cell|cellphone|fax|call|calling|dial|ring|"
    r"text|sms|whatsapp|landline|hotline|desk|direct|answering|reach|contact|messages?\s+to|"
    r"msisdn|caller[ _-]?id|callerid|telefon|telefono|tel\u00e9fono|telefone|t\u00e9l\u00e9phone|"
    r"t\u00e9l|handy|mobil|m\u00f3vil|movil|celular|cellulare|portable|rufnummer|"
    r"(?:ani|dnis)(?=\s*[=:]))(?![^\W_])"
    r"(?:[\s_]+(?:me|us)\b)?"
    r"[\s:#.,()=\"'_-]*(?:(?:no|number|nr|num)\b[\s:#.,()=\"'-]*)?(?:(?:at|on|is|to|from|es|est|ist|\u00e9|\u00e8)\s+)?"
    r"|(?:my|your|his|her|our|their)\s+number(?:\s+is\s+|\s*:\s*)"
    r"|(?:call|ring|text|reach|contact|dial)(?:\s+[^\W\d]+){1,3}\s+(?:at|on)\s+"
    r"|(?:\u96fb\u8a71|\u643a\u5e2f|\u624b\u673a|\u7535\u8bdd|\u624b\u6a5f|\u4ee3\u8868\u756a\u53f7"
    r"|\uc804\ud654|\ud734\ub300\ud3f0|\ud578\ub4dc\ud3f0|\uc5f0\ub77d\ucc98"
    # Arabic: phone, mobile, to get in touch, WhatsApp
    r"|\u0647\u0627\u062a\u0641|\u062c\u0648\u0627\u0644|\u0645\u0648\u0628\u0627\u064a\u0644"
    r"|\u0644\u0644\u062a\u0648\u0627\u0635\u0644|\u0648\u0627\u062a\u0633\u0627\u0628"
    r"|\u0631\u0642\u0645\u064a)"  # ... and "my number"
    r"(?:\u756a\u53f7|\ubc88\ud638|\u53f7\u7801|[\u306f\u304c\u306e\ub294\uc740]|\u3067\u3059|[\s:\uff1a])*"
    r")\Z",
    re.IGNORECASE,
)
PHONE_CONTEXT_GAP = 32
# How far before a number its cue can start (the gap plus the longest cue): streamed output
# whose unreleased text holds a digit is checked with at least this much released text in
# front (guards/streaming.py); without a digit there is no number for a cue to make a phone.
CUE_LOOKBEHIND_CHARS = PHONE_CONTEXT_GAP + 16
# A number followed by the line's label, as contact blocks write them ("416 60 039 office",
# "0688 843 79 56 (mobile)"): the label ends the line or comes before "," or ";".
TRAILING_CUE_WORDS = ("office", "fax", "mobile", "cell", "home", "work", "landline", "phone")
TRAILING_CUE = re.compile(
    r"[ -]*\(?(?:" + "|".join(TRAILING_CUE_WORDS) + r")\)?(?=[ \t]*(?:[\n\r,;]|\Z))",
    re.IGNORECASE,
)
# A table column so headed holds phone numbers (table_column.py): "contact_id,phone" over
# "9012,7135550138", "Kunde;Telefon;Mobil" over "B\u00e4ckerei Hoffmann;0221 / 1110258".
PHONE_HEADER = re.compile(
    r"(?<![^\W_])(?:phone|tel|telephone|mobile|cell|fax|msisdn|telefon|telefono|tel\u00e9fono|"
    r"telefone|t\u00e9l\u00e9phone|t\u00e9l|handy|mobil|m\u00f3vil|celular|cellulare|whatsapp|"
    r"ani|dnis|caller[ _-]?id)(?![^\W_])"
    r"|\u96fb\u8a71|\u643a\u5e2f|\u624b\u673a|\u7535\u8bdd|\uc804\ud654|\ud734\ub300\ud3f0|\uc5f0\ub77d\ucc98",
    re.IGNORECASE,
)
# Candidates for the rules below the shape rules: a run of digits and separators, "+" only as
# its first character or right after an opening "(" ("(+30) 2310 123456"), "/" only once,
# after an area code ("0664/1234567", "06-1/685 8783").
# After a "," too: a CSV cell ("9012,7135550138").
CUED_NUMBER = re.compile(
    rf"[+(\d](?<!{JOINING}.)(?<![+./].)\+?[\d ()./-]{{5,22}}\d(?!{JOINING}|[.,]\d)"
)
# National numbers that the shape rules refuse as two bare groups or an area code of five
# digits, but whose form only phone numbers take: a trunk "0" and two groups ("01632 960123",
# "050-1234567", "096882 00139"), and a bracketed area code before a long group ("(0161)
# 4960000").
TRUNK_TWO_GROUPS = re.compile(r"0[1-9]\d{0,4}[ -]\d{5,8}")
AREA_CODE_LONG = re.compile(r"\(\d{2,5}\)[ -]?\d{2,9}(?:[ -]\d{2,8}){0,3}")
# "00" and a country code, dialled from abroad, and then separated groups ("00421 2 70499962").
INTERNATIONAL_00 = re.compile(r"00[1-9]\d{0,3}[ -]")
# A trunk or country digit written before a number PHONE matched ("1-800-386-7560",
# "1.888.555.0147", "8 (783) 101-2228", "0 513 969 371").
TRUNK_DIGIT = re.compile(r"[018][ .-]?")
# An area code and "/" before a number PHONE matched ("35/139-6937", "(06)44/757-7104").
SLASH_AREA_CODE = re.compile(r"\(?\d{1,5}\)?(?:-?\d{1,2})?/ ?")
# A subtraction that GSM8K-style working writes out ("400-120-200=80", "450-150-36-50-20-10")
# is not a phone.
ARITHMETIC_AFTER = re.compile(r" *=|-\d")
# Digits read out one at a time, as voice transcripts write them ("the garage number is 0 1 1
# 7 4 9 6 0 2 9 1"): a phone number after a phone cue or a word saying a number follows.
SPACED_DIGITS = re.compile(r"\d(?<!\w\d)(?<!\d \d)(?: \d){6,14}(?!\w| \d)")
# Seven or more such digits hold three in a row with a space on each side: a search for that,
# led by a literal space, decides in a few µs whether the digit-led scan is worth running.
SPACED_HINT = re.compile(r" \d \d \d ")
NUMBER_IS = re.compile(
    r"\b(?:number|n\u00famero|numero|nomor|nummer|num\u00e9ro)"
    r"(?:\s+(?:is|es|\u00e9|est|ist|nya|adalah))?[\s:]*\Z",
    re.IGNORECASE,
)
# A WhatsApp chat link holds the number in international form: "https://wa.me/5511984172250".
WHATSAPP_LINK = re.compile(r"\bwa\.me/(\d{8,15})\b")
# A trunk "0", an area code and "/" before the subscriber's groups ("030/2847 1193"); not a
# month and year ("05/2024 1234").
SLASH_TRUNK = re.compile(r"0\d{1,4}/ ?(?!(?:19|20)\d\d\b)\d{3,8}(?:[ -]\d{2,8}){0,2}")
# An unseparated number ending in "000" after a cue is a quantity ("send messages to 1500000
# users", "text 2000000 people"), not one of the thousandth of phone numbers that end so.
ROUND_NUMBER = re.compile(r"\d+000")

# A number right after a word that names it as something else ("order no. 0 986 494 829",
# "part numbers like 0 986 494 829", "invoice #2026 0412 77", "Dossier: 2026 4471 08") is
# that thing: a bare number (no "+" or bracket) there is not a phone unless a phone cue
# stands before it too. Not "booking": in British English the booking number is the line one
# books on. The cue starts at most PHONE_CONTEXT_GAP characters before the number,
# with only numbering words, other numbers and punctuation between (a stream holds that much).
IDENTIFIER_CUE = re.compile(
    r"(?:\b(?:order|invoice|inv|ref|reference|tracking|ticket|case|part|parts|serial|sku|isbn|"
    r"confirmation|dossier|dossiernummer|policy|claim|account|acct|item|article|"
    r"model|batch|lot|shipment|transaction|txn|receipt|membership|customer|patient|"
    r"employee|student|bestellnummer|rechnungsnummer|numbers|po|p/n|pn|s/n|sn|imei|ean|upc|"
    r"gtin|barcode|kundennr|kundennummer|auftragsnr|auftragsnummer|bestellnr|rechnungsnr|"
    r"sendungsnummer|artikelnummer|aktenzeichen|referenz|pedido|factura|commande|facture|"
    r"ordine|fattura|fatura|sipari\u015f|takip|zam\u00f3wienia|faktury|faktura|meeting|"
    r"conference|webinar|pin|passcode|access\s+code|mrn|accession|apn|parcel|nf-e|nfe|member|"
    r"ap\u00f3lice|apolice|fact|feuille)"
    r"(?:[\s:#.,()-]*(?:no|nr|number|numbers|id|is|are|was|were|like|of|and|or|"
    r"n\u00ba|n\u00b0|num|numero|n\u00famero|num\u00e9ro|nummer|numer|\d+)\b\.?)*"
    # An identity or serial number's name may stand a few words before it ("serial number on
    # the unit is SN ...", "Seriennummer auf dem Aufkleber: ...", "NIP sprzedawcy ...").
    # National identity, tax and company register numbers are never phones either.
    r"|\b(?:serial|seriennummer|s/n|imei|nip|regon|cnpj|cpf|vat|siret|siren|ust-?id(?:nr)?|"
    r"steuernummer|sin|nas|aadhaar|nif|nie|dni|curp|rfc|pesel|bsn|nino|c\u00e9dula|cedula|rcs|"
    r"hrb|tax\s+id|tin|id|uscis|ndc|ruc|s\u00e9curit\u00e9\s+sociale)\b(?:[\s:#.,()-]+[^\W\d]+){0,3}"
    r"|(?:\u4f1d\u7968|\u6ce8\u6587|\u8ffd\u8de1|\u8ba2\u5355|\u8fd0\u5355|\u5feb\u9012\u5355"
    r"|\uc8fc\ubb38|\uc6b4\uc1a1\uc7a5|\uc1a1\uc7a5|\u90f5\u4fbf|\u3012|\u554f\u3044\u5408\u308f\u305b\u756a\u53f7"
    r"|\uc0ac\uc5c5\uc790\ub4f1\ub85d)"
    r"(?:\u756a\u53f7|\u53f7|\ubc88\ud638|[\u306f\ub294\uc740]|\s)*)"
    r"[\s:#.,()-]*\Z",
    re.IGNORECASE,
)
# A bare number led by a year-like group of four ("2026-1204-7781", "2026.4471.08") is a
# reference or a case number: national phone numbers without "+" start with a trunk "0" or
# a three-digit area code.
YEAR_LED = re.compile(r"(?:19|20)\d\d[ .-]\d+(?:[ .-]\d+)+")
ISO_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}\b")
DIGIT_RUN = re.compile(r"\d+")
NON_DIGIT_RUN = re.compile(r"\D+")
LOCAL_NUMBER = re.compile(r"\d{3}[-.]\d{4}")
ROUND_RANGE = re.compile(r"\d00-\d+00")  # "500-1000 words", not 500-1000 the local number


def _looks_like_number(value: str) -> bool:
    """Decimal numbers, dates (with a time after them too) and pairs of numbers are not phone
    numbers: "2012-10-01 00" is a timestamp, "975 3968" a house number and a postcode,
    "3610-114" a postcode, "700-1000" a range. Two bare digit groups count only as a local
    number (555-0134)."""
    if re.fullmatch(r"\d{1,4}[.-]\d{1,2}[.-]\d{1,4}", value) or ISO_DATE.match(value):
        return True
    if re.fullmatch(r"\d+\.\d+", value):
        return True
    bare = not value.startswith(("+", "("))
    if bare and YEAR_LED.fullmatch(value):
        return True
    if bare and ROUND_RANGE.fullmatch(value):
        return True
    return bare and len(DIGIT_RUN.findall(value)) == 2 and not LOCAL_NUMBER.fullmatch(value)


def phones(text: str) -> Iterable[Finding]:
    shaped: list[tuple[int, int]] = []
    for m in PHONE.finditer(text):
        value = m.group()
        if len(value) < 7:  # cannot hold 7 digits: most candidates are prices and years
            continue
        digits = sum(c.isdigit() for c in value.split("x")[0].split("ext")[0])
        separated = value.startswith("+") or any(c in value for c in " -.()")
        if (
            7 <= digits <= 15
            and separated
            and not _looks_like_number(value)
            and not ARITHMETIC_AFTER.match(text, m.end())
            and not _named_as_identifier(text, m.start(), value)
            and not _not_a_phone(text, m.start(), value)
        ):
            shaped.append((m.start(), m.end()))
    kept = set(range(len(shaped)))
    more = list(_more_phones(text, shaped, kept))
    yield from (Finding("PHONE_NUMBER", *shaped[i], 0.7) for i in sorted(kept))
    yield from more
    if SPACED_HINT.search(text):
        yield from _spaced_digits(text)
    if "wa.me/" in text:
        for m in WHATSAPP_LINK.finditer(text):
            yield Finding("PHONE_NUMBER", m.start(1), m.end(1), 0.7)


def _spaced_digits(text: str) -> Iterable[Finding]:
    for m in SPACED_DIGITS.finditer(text):
        start = m.start()
        lo = max(0, start - PHONE_CONTEXT_GAP)
        if _cued(text, start) or (
            NUMBER_IS.search(text, lo, start) and not IDENTIFIER_CUE.search(text, lo, start)
        ):
            yield Finding("PHONE_NUMBER", start, m.end(), 0.6)


def _cued(text: str, start: int) -> bool:
    return PHONE_CUE.search(text, max(0, start - PHONE_CONTEXT_GAP), start) is not None


def _in_phone_column(text: str, start: int, end: int) -> bool:
    cell = column_header(text, start, end)
    return cell is not None and PHONE_HEADER.search(cell) is not None


def _not_a_phone(text: str, start: int, value: str) -> bool:
    """One digit repeated ("(555) 555-5555", "0000 0000 00": placeholders), the tail of a
    code that letters and a hyphen open ("model HX-415-5550"), or a host name's label
    (`ec2-34-250-11-87.eu-west-1.compute.amazonaws.com`: an address spelled with hyphens)."""
    digits = {c for c in value if c.isdigit()}
    if len(digits) == 1:
        return True
    if start < 2 or text[start - 1] != "-":
        return False
    before = text[start - 2]
    return before.isalpha() or (
        before.isalnum() and _HOST_GOES_ON.match(text, start + len(value)) is not None
    )


_HOST_GOES_ON = re.compile(r"\.[A-Za-z]")


def _named_as_identifier(text: str, start: int, value: str) -> bool:
    """A bare number after IDENTIFIER_CUE and no phone cue ("order no. 555-123-4567" stays a
    number; "order line, call 555-123-4567" a phone)."""
    if value.startswith(("+", "(")):
        return False
    lo = max(0, start - PHONE_CONTEXT_GAP)
    return (
        IDENTIFIER_CUE.search(text, lo, start) is not None
        and PHONE_CUE.search(text, lo, start) is None
    )


def _more_phones(text: str, shaped: list[tuple[int, int]], kept: set[int]) -> Iterable[Finding]:
    """Numbers the shape rules refused, or saw only part of, that an international, trunk or
    area-code form, or a phone cue word before (PHONE_CUE) or after (TRAILING_CUE) makes a
    phone number. A whole number replaces the part of it that PHONE matched ("+33 1 75 41 14
    42" for "75 41 14 42", "1-800-386-7560" for "800-386-7560"); drops it from `kept`."""
    starts = [start for start, _ in shaped]
    for m in CUED_NUMBER.finditer(text):
        start, end = m.start(), m.end()
        if text[start] == "(" and ")" not in m.group():
            start += 1  # a bracket around the number, not an area code's ("(0151 12377785)")
        # the shaped matches that overlap the candidate: few, as a candidate is short
        lo = bisect.bisect_right(starts, start)
        lo -= bool(lo and shaped[lo - 1][1] > start)
        hi = bisect.bisect_left(starts, end)
        parts = range(lo, hi)
        if parts and not all(start <= shaped[k][0] and shaped[k][1] <= end for k in parts):
            continue  # a shaped match reaches out of it (an extension)
        value = text[start:end]
        digits = sum(c.isdigit() for c in value)
        if not 7 <= digits <= 15 or ISO_DATE.match(value) or "+" in value[2:]:
            continue
        if (value[1:2] == "+" and value[0] != "(") or value.count("/") > 1:
            continue  # "5+1234567"; a date ("12/05/2024")
        if _not_a_phone(text, start, value):
            continue
        slash = "/" in value
        if parts:
            one = len(parts) == 1 and shaped[lo][1] == end
            whole = shaped[lo] != (start, end) and (
                (not slash and _national_or_international(value, digits))
                or (
                    one
                    and (SLASH_AREA_CODE if slash else TRUNK_DIGIT).fullmatch(
                        text, start, shaped[lo][0]
                    )
                )
            )
            if (
                whole
                and not ARITHMETIC_AFTER.match(text, end)
                and not _named_as_identifier(text, start, value)
            ):
                kept.difference_update(parts)
                yield Finding("PHONE_NUMBER", start, end, 0.7)
        elif (
            (
                _national_or_international(value, digits)
                if not slash
                else SLASH_TRUNK.fullmatch(value) is not None and digits <= 12
            )
            and not ARITHMETIC_AFTER.match(text, end)
            and not _named_as_identifier(text, start, value)
        ):
            yield Finding("PHONE_NUMBER", start, end, 0.7)
        elif not ROUND_NUMBER.fullmatch(value) and (
            # After a "," the number is a CSV cell, which its column names, not the cell
            # before it ("...",FALSE,TEXT,1024570189": "text" is no cue there).
            (text[start - 1 : start] != "," and _cued(text, start))
            or TRAILING_CUE.match(text, end)
            or _in_phone_column(text, start, end)
        ):
            yield Finding("PHONE_NUMBER", start, end, 0.6)


def _national_or_international(value: str, digits: int) -> bool:
    """The forms only phone numbers take that the PHONE pattern does not cover: "+" or "00"
    with a one-digit or long group ("+54 9 11 1234 5678", "+49(0)3012345678", "00972 2 236
    2027"), a trunk "0" and two groups, a bracketed area code before a long group."""
    if value.startswith(("+", "(+")):
        return 8 <= digits <= 15 and _international_groups(value)
    if INTERNATIONAL_00.match(value):
        return 10 <= digits <= 15 and _international_groups(value)
    if TRUNK_TWO_GROUPS.fullmatch(value):
        return 9 <= digits <= 12
    if AREA_CODE_LONG.fullmatch(value) is None:
        return False
    return 10 <= digits <= 13 or (digits == 9 and value.startswith("(0"))


def _international_groups(value: str) -> bool:
    """Single separators between the groups (one bracket pair at most) and at most two groups
    of one digit: "+4 5 6 7 8 9 10" in a sum is not a number."""
    groups = DIGIT_RUN.findall(value)
    separators = NON_DIGIT_RUN.findall(value.lstrip("(+"))
    if any(len(sep) > 2 for sep in separators):
        return False
    opening, closing = value.count("("), value.count(")")
    if opening != closing or opening > 1 or value.find("(") > value.find(")"):
        return False
    return sum(len(g) == 1 for g in groups) <= 2
