"""Credentials in base64 (guards/detectors/encoded_credentials.py, decoded by the secrets
detector): found by what the run decodes to, masked whole; other base64 stays readable, and a
hostile text of runs costs bounded work.

Every value is made up in the documented format of its tool or provider.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from guards.detectors.encoded_credentials import MAX_RUNS, decoded_runs, login_kind
from guards.detectors.secrets import SecretsDetector

GITHUB = "ghp_Y920hon2oJ8dGi2kwKlupF8mnm6SJS6YVR1A"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


DOCKER_CONFIG = b64(
    json.dumps(
        {
            "auths": {
                "ghcr.io": {
                    "username": "tessellate-ci",
                    "password": GITHUB,
                    "auth": b64(f"tessellate-ci:{GITHUB}"),
                }
            }
        }
    )
)
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("text", "run", "kind"),
    [
        # a Kubernetes Secret: nothing near the value says "secret"
        (
            f"type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {DOCKER_CONFIG}\n",
            DOCKER_CONFIG,
            "GITHUB_TOKEN",
        ),
        (
            f"data:\n  DB_URL: {b64('postgres://app:Kq9xLm2Pz@db:5432/app')}\n",
            b64("postgres://app:Kq9xLm2Pz@db:5432/app"),
            "BASIC_AUTH_CREDENTIALS",
        ),
        (f"data:\n  tls.key: {b64(PEM)}\n", b64(PEM), "PRIVATE_KEY"),
        # an SMTP session's AUTH PLAIN (authzid, user, password)
        (
            "C: AUTH PLAIN " + b64("\0postmaster@mg.example.dev\0key-b30abf285a18eb93"),
            b64("\0postmaster@mg.example.dev\0key-b30abf285a18eb93"),
            "PASSWORD",
        ),
        # a Basic credential, and a docker config's own auth field
        (
            f'curl -H "Authorization: Basic {b64("admin:S3cret!pw")}" https://x.example',
            b64("admin:S3cret!pw"),
            "PASSWORD",
        ),
        (f'{{"auth": "{b64("deploy:W1ndmill-9")}"}}', b64("deploy:W1ndmill-9"), "PASSWORD"),
        # a personal access token with no user (Azure DevOps' extraheader)
        (
            f"extraheader = AUTHORIZATION: basic {b64(':zm6kxw5uvswoqdw2bz6emhyovn7qa7do2t6j')}",
            b64(":zm6kxw5uvswoqdw2bz6emhyovn7qa7do2t6j"),
            "PASSWORD",
        ),
        # SMTP AUTH LOGIN: the line after the base64 "Password:" prompt
        (
            "334 VXNlcm5hbWU6\nbm90aWZ5LXN2Yw==\n334 UGFzc3dvcmQ6\n"
            f"{b64('Kestrel!Notify#88')}\n235",
            b64("Kestrel!Notify#88"),
            "PASSWORD",
        ),
        # a provider key encoded once more (a Secret's data of an env file)
        (
            f"  .env: {b64('OPENAI_API_KEY=sk-proj-' + 'Ab3x' * 10)}",
            b64("OPENAI_API_KEY=sk-proj-" + "Ab3x" * 10),
            "OPENAI_API_KEY",
        ),
    ],
)
def test_an_encoded_credential_is_masked_whole_with_the_type_of_what_it_holds(
    text: str, run: str, kind: str
) -> None:
    assert (kind, run) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        # a username, a URL with no password, prose, a config that is no secret
        f"data:\n  username: {b64('admin-user')}\n  host: {b64('db.internal:5432')}",
        f"  README: {b64('This service reads its settings from the environment.')}",
        f"  config.json: {b64(json.dumps({'replicas': 3, 'image': 'nginx:1.27'}))}",
        # user:password with no sign of a login around it (a label, a time)
        f"  pair: {b64('admin:hunter2hunter2')}",
        # binary data, a hash, an identifier, a JWT's header alone
        f"  logo.png: {b64(bytes(range(200)))}",
        "sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "AbstractSingletonProxyFactoryBeanImpl is the class",
        # NUL-separated sentences (a gettext catalogue) are no SASL login
        f"  data: {b64(chr(0) + 'Hay %s fichero (con)' + chr(0) + 'Un fichero nuevo')}",
        # a placeholder inside: a template stays a template after decoding
        f"  .env: {b64('DB_PASSWORD=${DB_PASSWORD}')}",
    ],
)
def test_other_base64_stays_readable(text: str) -> None:
    assert found(text) == []


def test_a_login_needs_its_password_and_its_context() -> None:
    assert login_kind("AUTH PLAIN x", 11, "\0user\0") is None  # no password
    assert login_kind("AUTH PLAIN x", 11, "\0user") is None
    assert login_kind("Basic x", 6, "user:pw") == "PASSWORD"
    assert login_kind("Basic x", 6, "user:") is None
    assert login_kind("label: x", 7, "user:pw") is None


def test_runs_are_decoded_only_in_long_words_and_at_most_max_runs() -> None:
    """A hostile text of many runs decodes MAX_RUNS of them; the rest cost nothing."""
    run = b64("user@example.com:hunter2")
    text = " ".join([run] * (MAX_RUNS * 20))
    assert len(list(decoded_runs(text))) == MAX_RUNS
    started = time.perf_counter()
    SecretsDetector().find(text)
    assert time.perf_counter() - started < 5  # bounded, not a speed target


def test_short_basic_runs_count_toward_max_runs() -> None:
    """`Basic` before many short runs (each decoded and searched a level deeper) was a hostile
    text's lever: 10,000 of them took 425 ms before they counted."""
    text = " ".join([f"Basic {b64('bob:Zx81!qq')}"] * (MAX_RUNS * 20))
    assert len(list(decoded_runs(text))) == MAX_RUNS


def test_nesting_is_followed_two_levels_deep_and_no_further() -> None:
    secret = f"password = {GITHUB}"
    twice = b64(b64(secret))
    assert found(f"x: {twice}") == [("GITHUB_TOKEN", twice)]
    thrice = b64(twice)
    assert found(f"x: {thrice}") == []


@pytest.mark.parametrize(
    "text",
    [
        "x" * 20 + "=",  # not base64's length
        "QUJD" * 4 + "\ud800",  # a lone surrogate after a run
        "////" * 8,  # decodes to bytes that are not UTF-8
        "A" * 100_000,  # one long run of zeros
        b64("\0\0\0\0\0\0\0\0\0\0\0\0"),
    ],
)
def test_malformed_runs_are_skipped_without_error(text: str) -> None:
    SecretsDetector().find(text)
