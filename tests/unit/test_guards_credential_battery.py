"""Random credentials in the forms developers write them: how many the secrets detector finds.

The probes written by helpers hold a few values each in each form; random values show the
detector's blind spots by shape (a password that begins with a sigil was passed as a
reference, one in capitalised parts as a type name, letters only as a variable). Values are
drawn with a fixed seed, so each rate is exact; the floors sit at what the detector finds today
(2026-12-07, after those fixes) less a few points.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

from guards.detectors.secrets import SecretsDetector

ALNUM = string.ascii_letters + string.digits
SYMBOLS = ALNUM + "!@#$%^&*-_+=?."
PER_FORM = 60


def _values(alphabet: str, shortest: int, longest: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(shortest, longest)))
        for _ in range(PER_FORM)
    ]


GENERATORS: dict[str, Callable[[], list[str]]] = {
    "letters and digits, 8-16": lambda: _values(ALNUM, 8, 16, 1),
    "with symbols, 10-16": lambda: _values(SYMBOLS, 10, 16, 2),
    "token, 24-40": lambda: _values(ALNUM, 24, 40, 3),
}

# form -> floor for each generator, in GENERATORS' order
FORMS: dict[str, tuple[float, float, float]] = {
    "password: {v}": (0.95, 0.88, 0.97),
    '"password": "{v}"': (0.95, 0.9, 0.97),
    "PASSWORD={v}": (0.95, 0.9, 0.97),
    'password = "{v}"': (0.95, 0.9, 0.97),
    "db_password = {v}": (0.88, 0.85, 0.97),
    "--password {v}": (0.95, 0.88, 0.97),
    "mysql -u root -p{v} db": (0.95, 0.88, 0.97),
    "sshpass -p {v} ssh ops@bastion": (0.95, 0.9, 0.97),
    "Server=db;User Id=sa;Password={v};": (0.85, 0.9, 0.97),
    "export API_TOKEN={v}": (0.95, 0.9, 0.97),
    "curl -u admin:{v} https://x.example": (0.95, 0.9, 0.97),
    "redis-cli -a {v} ping": (0.95, 0.9, 0.97),
    "docker login -u bob -p {v} reg.example": (0.95, 0.9, 0.97),
    "echo '{v}' | docker login -u bob --password-stdin": (0.95, 0.9, 0.97),
    "PGPASSWORD={v} psql -h db": (0.95, 0.9, 0.97),
    "AWS_SECRET_ACCESS_KEY={v}": (0.95, 0.9, 0.97),
    "client_secret: {v}": (0.95, 0.88, 0.97),
    "My password is {v}": (0.95, 0.88, 0.97),
    "the wifi password is {v}, ask me again if it fails": (0.95, 0.85, 0.97),
    "login: admin / {v}": (0.95, 0.88, 0.97),
    # 2026-12-07 (twenty-first stop): before, a URL password lost at "@", "?" or "#" (0.68 with
    # symbols), header tokens under 20 characters (0.0), the value before its name (0.0)
    "postgres://app:{v}@db.internal:5432/app": (0.95, 0.88, 0.97),
    "use {v} as the password": (0.95, 0.9, 0.97),
    "the password was reset to {v}": (0.95, 0.85, 0.97),
    "password -> {v}": (0.95, 0.85, 0.97),
    "credentials: admin/{v}": (0.95, 0.9, 0.97),  # was 0.77, 0.12
}
# Forms whose values hold no symbols: a bearer token's alphabet is base64url's.
TOKEN_FORMS: dict[str, tuple[float, float]] = {
    "Authorization: Bearer {v}": (0.95, 0.97),
    "curl -H 'Authorization: Bearer {v}' https://api.example": (0.95, 0.97),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_random_credentials_in_each_form_are_found(form: str) -> None:
    detector = SecretsDetector()
    for (name, values), floor in zip(GENERATORS.items(), FORMS[form], strict=True):
        found = 0
        for value in values():
            text = form.format(v=value)
            spans = [text[f.start : f.end] for f in detector.find(text)]
            found += any(value in span for span in spans)
        assert found / PER_FORM >= floor, f"{form} / {name}: {found} of {PER_FORM}"


@pytest.mark.parametrize("form", sorted(TOKEN_FORMS))
def test_random_tokens_in_each_header_form_are_found(form: str) -> None:
    detector = SecretsDetector()
    generators = {k: GENERATORS[k] for k in ("letters and digits, 8-16", "token, 24-40")}
    for (name, values), floor in zip(generators.items(), TOKEN_FORMS[form], strict=True):
        found = 0
        for value in values():
            text = form.format(v=value)
            found += any(value in text[f.start : f.end] for f in detector.find(text))
        assert found / PER_FORM >= floor, f"{form} / {name}: {found} of {PER_FORM}"
