"""Forms read off the train half of an eighth writer's probe (r14, twenty-first stop; values here
are this file's own): name/value records whose fields carry a prefix (CloudFormation's
`ParameterKey` / `ParameterValue`), a JSON document escaped inside a JSON string (a HAR's
`postData.text`), and password words the detector did not know or could not reach: Hebrew,
Arabic, Hindi, Thai and Romanian words, `=` after a CJK word, a Russian preposition after the
word, an adjective after it ("mật khẩu cũ là ...", "la contraseña nueva es ...").

Each is found as its value only and held on a stream from where its form begins; look-alikes
are not.
"""

from __future__ import annotations

import pytest

from guards.detectors.escaped_json import unescaped_view
from guards.detectors.secrets import SecretsDetector


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


def _held_from_the_value(text: str, value: str) -> None:
    start = text.index(value)
    for cut in range(start, start + len(value)):
        assert SecretsDetector().holdback(text[:cut]) >= cut - start, text[:cut]


FORMS = [
    ('[{"ParameterKey": "DbRootPassword", "ParameterValue": "Gr4nary!Loft"}]', "Gr4nary!Loft"),
    (
        "Parameters:\n  - ParameterKey: AdminPassword\n    ParameterValue: Kettle#Hill42\n",
        "Kettle#Hill42",
    ),
    ('{"OptionName": "MasterUserPassword", "OptionValue": "Qu4rry-Lane!9"}', "Qu4rry-Lane!9"),
    ('"text": "{\\"user\\":\\"ops\\",\\"password\\":\\"Brass-Anchor-77\\"}"', "Brass-Anchor-77"),
    ("密码 = Yun#Shan2211", "Yun#Shan2211"),
    ("パスワード = Momiji*Aki3390", "Momiji*Aki3390"),
    ("רשמתי בקובץ: סיסמה = Zayit!Kahol61", "Zayit!Kahol61"),
    ("הסיסמה היא Zayit!Kahol61 לשרת", "Zayit!Kahol61"),
    ("كلمة المرور هي Najma#2025x للخادم", "Najma#2025x"),
    ("सर्वर का पासवर्ड Chai#Adrak77 है", "Chai#Adrak77"),
    ("รหัสผ่านคือ Mango#Sticky88", "Mango#Sticky88"),
    ("parola este Carpati#2024 pentru server", "Carpati#2024"),
    ("// пароль от роутера: Berezka_2031", "Berezka_2031"),
    ("mật khẩu cũ là SenTrang@1999, mới thì chưa đổi", "SenTrang@1999"),
    ("la contraseña nueva es Lim0n!Verde para todos", "Lim0n!Verde"),
]


@pytest.mark.parametrize(("text", "value"), FORMS)
def test_the_form_is_found_value_only(text: str, value: str) -> None:
    assert found(text) == [("PASSWORD", value)]


@pytest.mark.parametrize(("text", "value"), FORMS)
def test_the_form_being_streamed_is_held(text: str, value: str) -> None:
    _held_from_the_value(text + "\nnext", value)


@pytest.mark.parametrize(
    "text",
    [
        '{"primaryKey": "id", "value": "abc12345"}',  # a field that names no credential
        '[{"ParameterKey": "VpcCidr", "ParameterValue": "10.80.0.0/16"}]',
        'log: {\\"msg\\":\\"password reset sent\\",\\"user\\":\\"ann\\"}',
        '{\\"token\\":\\"${TOKEN}\\"}',
        "if password == hashed2:",
        "the password manager is 1Password",
        "la contraseña nueva es obligatoria",  # "is required"
        "密码 = ${DB_PASS}",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert found(text) == []


def test_an_unescaped_view_maps_every_character_back() -> None:
    text = 'a {\\"k\\":\\"v\\"} \\" end \\"'
    view = unescaped_view(text)
    assert view.text == 'a {"k":"v"} " end "'
    for pos, char in enumerate(view.text):
        assert text[view.to_original(pos)] == char
    start = view.text.index("v")
    assert view.span_to_original(start, start + 1) == (text.index("v"), text.index("v") + 1)
