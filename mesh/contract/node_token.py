"""The shared node registration token: where it is read from and how it travels.

Router and nodes both import this, so the metadata key and the rules for a usable token cannot
drift apart. Config only ever names an environment variable or a file; the token is read when
a server starts and is wrapped so that repr, logs and tracebacks show `NodeToken(<redacted>)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Names, not secrets: the metadata key a token travels in, and the variable read by default.
NODE_TOKEN_HEADER = "x-mesh-node-token"  # noqa: S105
DEFAULT_TOKEN_ENV = "MESH_REGISTRY_TOKEN"  # noqa: S105
MIN_TOKEN_CHARS = 16


class TokenUnavailable(ValueError):
    """A configured token source is unset, empty, unreadable or unusable.

    The message names the source (variable or file) and the rule broken, never the value.
    """


@dataclass(frozen=True)
class NodeToken:
    """A registration token whose repr never shows the value."""

    value: str

    def __repr__(self) -> str:
        return "NodeToken(<redacted>)"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata a node sends with Register, Heartbeat and Deregister."""
        return ((NODE_TOKEN_HEADER, self.value),)


def read_token(
    what: str, *, env: str | None, file: str | Path | None, env_required: bool
) -> NodeToken | None:
    """The token from `file` if one is named (it wins), else from the variable `env`.

    None means "no token": only when no file is named and the variable is unset while
    `env_required` is false (the variable is the default one, not one chosen in config).
    A named file that cannot be read or is empty is always an error: a typo in a secret's
    path must never switch authentication off quietly.
    """
    if file is not None:
        try:
            raw = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenUnavailable(
                f"{what}: cannot read token file {file}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise TokenUnavailable(f"{what}: token file {file} is not UTF-8 text") from None
        source = f"token file {file}"
    else:
        raw = os.environ.get(env or DEFAULT_TOKEN_ENV, "")
        source = f"environment variable {env or DEFAULT_TOKEN_ENV}"
        if not raw.strip() and not env_required:
            return None
    token = raw.strip()
    if not token:
        raise TokenUnavailable(f"{what}: {source} is empty or unset")
    # gRPC metadata values must be printable ASCII; whitespace inside is almost always a
    # copy-paste accident, so it is refused rather than silently trimmed.
    if not all(33 <= ord(ch) <= 126 for ch in token):
        raise TokenUnavailable(
            f"{what}: the token in {source} must be printable ASCII without whitespace"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenUnavailable(
            f"{what}: the token in {source} is shorter than {MIN_TOKEN_CHARS} characters "
            "(use e.g. `openssl rand -hex 32`)"
        )
    return NodeToken(token)
