"""PII in the forms a fourth unseen probe showed (benchmarks/data/guards/pii_probe_r4.jsonl):
values named by a table's header, numbers glued to Chinese, Japanese and Korean text, keys
of logs and JSON, numbers named as identifiers in other languages, card networks, networks
that are not hosts. Each rule has a case it must refuse beside the case it finds."""

from __future__ import annotations

import pytest

from guards.detectors.pii import PiiDetector, card_network_valid, luhn_valid

DETECTOR = PiiDetector()


def found(text: str, kind: str | None = None) -> list[str]:
    return [text[f.start : f.end] for f in DETECTOR.find(text) if kind in (None, f.type)]


def with_luhn_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


# -- table columns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("dept|name|ssn|hours\nOps|Lee, Ana|219875412|40\n", "219875412"),
        (
            "| Name | SSN |\n|---|---|\n| J. Ruiz | 219\u201387\u20135412 |\n",
            "219\u201387\u20135412",
        ),
        ("id;Social Security Number;rate\n7;219875412;21.50\n8;320114455;19.00", "320114455"),
        ("emp\tTIN\n42\t219875412\n", "219875412"),
    ],
)
def test_an_unseparated_ssn_in_a_column_so_headed_is_found(text: str, value: str) -> None:
    assert value in found(text, "US_SSN")


@pytest.mark.parametrize(
    "text",
    [
        "id,amount\n1,219875412\n",  # the column is something else
        "id,ssn\n1,ref 219875412\n",  # not the whole cell
        "code,total\nA|B,219875412\n",  # another delimiter on the row
    ],
)
def test_a_nine_digit_number_in_another_column_is_not_an_ssn(text: str) -> None:
    assert found(text, "US_SSN") == []


def test_phone_numbers_in_a_phone_column_are_found_and_an_id_column_is_not() -> None:
    text = "contact_id,phone\n9011,2125550199\n9012,7135550138\n"
    assert found(text, "PHONE_NUMBER") == ["2125550199", "7135550138"]
    assert found("contact_id,amount\n9011,2125550199\n", "PHONE_NUMBER") == []
    german = "Kunde;Telefon;Mobil\nB\u00e4ckerei Hoffmann;0221 / 1110258;0151 12377785\n"
    assert found(german, "PHONE_NUMBER") == ["0221 / 1110258", "0151 12377785"]


def test_prose_lines_of_a_multiline_csv_field_are_not_a_header() -> None:
    text = 'act,notes,n\nx,"the long note\nabout the phone, and more, more"\n2125550199,a,b\n'
    assert found(text, "PHONE_NUMBER") == []


# -- cues --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("<Subscriber><SSN>219875412</SSN></Subscriber>", "219875412"),
        ("recipient_tin: 219875412", "219875412"),
        ("claimant Ann Feld, social 219875412, filed late", "219875412"),
        ("N\u00famero de Seguro Social: 219875412", "219875412"),
    ],
)
def test_ssn_cues_of_markup_forms_and_other_languages(text: str, value: str) -> None:
    assert found(text, "US_SSN") == [value]


def test_example_ssns_and_words_ending_in_tin_are_not_ssns() -> None:
    assert found("Format it like 123-45-6789 or 078-05-1120.", "US_SSN") == []
    assert found("Martin 219875412 units", "US_SSN") == []


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("[otp] send ok msisdn=447700900271 len=6", ["447700900271"]),
        ("ivr: call_start ani=2145550161 dnis=8005550100", ["2145550161", "8005550100"]),
        ('{"name": "Ana", "phone": "2125550199"}', ["2125550199"]),
        ("mobile_phone=2125550199", ["2125550199"]),
    ],
)
def test_log_and_json_keys_name_a_phone(text: str, values: list[str]) -> None:
    assert found(text, "PHONE_NUMBER") == values


def test_a_word_that_only_contains_a_cue_is_none() -> None:
    assert found("annie=2145550161 iphone 2145550162", "PHONE_NUMBER") == []
    assert found('id,text\n5,"x",FALSE,TEXT,1024570189\n', "PHONE_NUMBER") == []


# -- Chinese, Japanese and Korean ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("\u8054\u7cfb\u738b\u7ecf\u7406\uff0c\u624b\u673a13981801359\uff0c", ["13981801359"]),
        ("\u529e\u516c\u5ba4\u7535\u8bdd010-6552 8310\uff0c", ["010-6552 8310"]),
        ("\u4ee3\u8868\u756a\u53f7\u306f03-5412-7730\u3067\u3059", ["03-5412-7730"]),
        ("\uae30\uc0ac\ub2d8 \ubc88\ud638\ub294 010-2300-9453\uc774\uace0", ["010-2300-9453"]),
    ],
)
def test_numbers_glued_to_cjk_text_are_phones(text: str, values: list[str]) -> None:
    assert found(text, "PHONE_NUMBER") == values


@pytest.mark.parametrize(
    "text",
    [
        "\u6ce8\u6587\u756a\u53f7\u306f 2026-1130-4471 \u3067\u3059",  # order number
        "\u90f5\u4fbf\u756a\u53f7\u3012150-0002",  # postal code
        "\uc6b4\uc1a1\uc7a5 \ubc88\ud638\ub294 6085 2231 9907",  # waybill number
        "\u8ba2\u5355\u53f7 2026110488213",  # order number
    ],
)
def test_numbers_named_as_identifiers_in_cjk_are_not_phones(text: str) -> None:
    assert found(text, "PHONE_NUMBER") == []


def test_an_address_glued_to_cjk_text_is_cut_where_the_script_changes() -> None:
    text = "\u62c5\u5f53\u306ft.suzuki@sakura-kogyo.co.jp\u3067\u3059"
    assert found(text, "EMAIL_ADDRESS") == ["t.suzuki@sakura-kogyo.co.jp"]
    idn = "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a"
    assert found(f"write to {idn} today", "EMAIL_ADDRESS") == [idn]


# -- numbers named as something else -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "PO# 4471-220-9983 is late",
        "the serial number on the unit is SN 800-447-2213",
        "The boiler plate says S/N 2125-550-1839",
        "Seriennummer auf dem Aufkleber: 4471 220 998 1047",
        "NIP sprzedawcy 525-000-12-35",
        "Takip no: 3184 5521 0907",
        "Auftragsnr. 4500 1187 23",
        "O CNPJ da empresa \u00e9 12.345.679",
        "test account number (555) 555-5555",
        "replacement pump model HX-415-5551",
    ],
)
def test_identifiers_placeholders_and_model_codes_are_not_phones(text: str) -> None:
    assert found(text, "PHONE_NUMBER") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("or my work line (212) 555-0170 extension 4410.", "(212) 555-0170 extension 4410"),
        ('<a href="tel:+1-415-555-0132;ext=22">', "+1-415-555-0132;ext=22"),
        ("I've called 1.888.555.0147 twice", "1.888.555.0147"),
        ("Sato Bakery,Ken Sato,1-206-555-0153,Seattle", "1-206-555-0153"),
        ("Er hat mir aufs Handy geschrieben (0151 12377785).", "0151 12377785"),
        ("Mobile: 096882 00139", "096882 00139"),
    ],
)
def test_phone_forms_whole(text: str, value: str) -> None:
    assert found(text, "PHONE_NUMBER") == [value]


# -- cards, IBANs, IPs, e-mail -------------------------------------------------------------


def test_luhn_valid_numbers_no_card_network_issues_are_not_cards() -> None:
    imei = with_luhn_digit("35453331478932")  # 15 digits from "35": an IMEI
    isbn = with_luhn_digit("978976260007")  # 13 digits from "978"
    order = with_luhn_digit("1145567890123")  # 14 digits from "1"
    for number in (imei, isbn, order):
        assert not card_network_valid(number)
        assert found(f"value {number} here", "CREDIT_CARD") == []
    for card in ("378282246310005", "4111111111111111", "5555555555554444", "3530111333300000"):
        assert found(f"card {card} ok", "CREDIT_CARD") == [card]
    jcb15 = with_luhn_digit("21317519779645")
    assert found(f"Please block card no {jcb15}", "CREDIT_CARD") == [jcb15]


def test_a_dashed_iban_is_found() -> None:
    assert found("IBAN ES91-2100-0418-4502-0005-1332 please", "IBAN_CODE") == [
        "ES91-2100-0418-4502-0005-1332"
    ]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("-A INPUT -s 10.0.0.0/8 -j DROP; -s 198.51.100.7/32 -j ACCEPT", ["198.51.100.7"]),
        ("ingress 192.168.0.0/16 tcp/22, egress 0.0.0.0/0 all", []),
        ("Block 45.0.0.0 and allow 45.12.0.9", ["45.12.0.9"]),
        ("the prefix 2001:db8::/32 and the host 2001:db8::7", ["2001:db8::7"]),
        ("why ::ffff:198.51.100.204 in the log?", ["::ffff:198.51.100.204"]),
    ],
)
def test_networks_are_not_host_addresses(text: str, values: list[str]) -> None:
    assert found(text, "IP_ADDRESS") == values


def test_email_forms() -> None:
    assert found("addresses like o'brien.sean@kilkennycrafts.ie break it", "EMAIL_ADDRESS") == [
        "o'brien.sean@kilkennycrafts.ie"
    ]
    assert found("quoted 'bob@example.com' here", "EMAIL_ADDRESS") == ["bob@example.com"]
    assert found("copia a lucia.gestoria(arroba)gmail.com, gracias", "EMAIL_ADDRESS") == [
        "lucia.gestoria(arroba)gmail.com"
    ]


ARABIC_INDIC_NUMBER = "\u0660\u0661\u0660\u0660\u0662\u0668\u0664\u0665\u0667\u0661\u0663"


# -- forms a fifth unseen probe showed (benchmarks/data/guards/pii_probe_r5.jsonl) -----------


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        (
            "- C2: hxxp://45.141.87[.]19/login and 193(.)233(.)20(.)140",
            "IP_ADDRESS",
            [
                "45.141.87[.]19",
                "193(.)233(.)20(.)140",
            ],
        ),
        (
            "IBAN\u00a0: FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189",
            "IBAN_CODE",
            ["FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189"],
        ),
        ("Co-borrower SSN: 405 - 82 - 0070", "US_SSN", ["405 - 82 - 0070"]),
        (
            "\u304a\u554f\u3044\u5408\u308f\u305b\uff1a\uff10\uff13\uff0d\uff15\uff12\uff11\uff11\uff0d\uff18\uff18\uff14\uff17",
            "PHONE_NUMBER",
            ["\uff10\uff13\uff0d\uff15\uff12\uff11\uff11\uff0d\uff18\uff18\uff14\uff17"],
        ),
        (
            "\u0644\u0644\u062a\u0648\u0627\u0635\u0644: " + ARABIC_INDIC_NUMBER,
            "PHONE_NUMBER",
            [ARABIC_INDIC_NUMBER],
        ),
        ("falar com ela: https://wa.me/5511984172250", "PHONE_NUMBER", ["5511984172250"]),
        ("erreichen Sie mich unter 030/2847 1193.", "PHONE_NUMBER", ["030/2847 1193"]),
        ("Main 1 (402) 555-0100, ext. 3318 | Fax", "PHONE_NUMBER", ["(402) 555-0100, ext. 3318"]),
    ],
)
def test_fifth_probe_forms_are_found(text: str, kind: str, values: list[str]) -> None:
    assert found(text, kind) == values


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Message-ID: <CAF7x2Qm8k1-20261203.144107@mail.example-cu.org>", "EMAIL_ADDRESS"),
        ("The switch firmware is 10.2.3.4 now", "IP_ADDRESS"),
        ("Pay reference RF18539007547034 today", "IBAN_CODE"),
        ("500 - 12 - 1234 is what is left", "US_SSN"),
        ("Meeting ID: 844 1920 3371", "PHONE_NUMBER"),
        ("Join by phone (US) PIN: 418 220 771", "PHONE_NUMBER"),
        ("My SIN is 553 331 471", "PHONE_NUMBER"),
        ("USt-IdNr. DE 318 442 910", "PHONE_NUMBER"),
        ("NIF do condom\u00ednio 901 248 119", "PHONE_NUMBER"),
        ("RCS Nantes 848 932 885", "PHONE_NUMBER"),
        ("MRN 004418822, Accession 26-338-04471", "PHONE_NUMBER"),
        ("\u304a\u554f\u3044\u5408\u308f\u305b\u756a\u53f7 4471-8293-0551", "PHONE_NUMBER"),
        ("NF-e n\u00ba 000.118.204", "PHONE_NUMBER"),
        ("Invoice period 05/2024 1234", "PHONE_NUMBER"),
    ],
)
def test_fifth_probe_look_alikes_are_not_values(text: str, kind: str) -> None:
    assert found(text, kind) == []


# -- forms a sixth unseen probe showed (benchmarks/data/guards/pii_probe_r6.jsonl) -----------


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        (
            "Seller: send card details. I almost typed 5150555488858853 11/28 cvv 314",
            "CREDIT_CARD",
            ["5150555488858853"],
        ),
        ("Office: 239.263.1100 Ext. 215", "PHONE_NUMBER", ["239.263.1100 Ext. 215"]),
        ("tel\u00e9fono (01) 441-2867 anexo 215", "PHONE_NUMBER", ["(01) 441-2867 anexo 215"]),
        ("Mi tel\u00e9fono es 8841 2763.", "PHONE_NUMBER", ["8841 2763"]),
        (
            "the garage number is 0 1 1 7 4 9 6 0 2 9 1 period",
            "PHONE_NUMBER",
            ["0 1 1 7 4 9 6 0 2 9 1"],
        ),
        ("my social security number is 3 5 7 0 2 5 4 2 7", "US_SSN", ["3 5 7 0 2 5 4 2 7"]),
    ],
)
def test_sixth_probe_forms_are_found(text: str, kind: str, values: list[str]) -> None:
    assert found(text, kind) == values


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("the order number is 1 2 3 4 5 6 7 8", "PHONE_NUMBER"),
        ("scores: 1 2 3 4 5 6 7 8 9", "US_SSN"),
        ("Model AX3000, FW 1.2.0.48", "IP_ADDRESS"),
        ("ID de motorista 8830-4471-2209", "PHONE_NUMBER"),
        ("Receipt says member #111 9048 2213", "PHONE_NUMBER"),
        ("Ap\u00f3lice n\u00ba 0091/223841", "PHONE_NUMBER"),
        ("USCIS# 218-445-903", "PHONE_NUMBER"),
        ("bytes: 57 68 61 74 20 69 73 20 61 20", "CREDIT_CARD"),
    ],
)
def test_sixth_probe_look_alikes_are_not_values(text: str, kind: str) -> None:
    assert found(text, kind) == []
