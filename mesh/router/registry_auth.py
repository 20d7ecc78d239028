"""Who may change the routing table: the registry's mode, and the shared registration token.

Register, Heartbeat and Deregister decide where traffic goes. In mode `token` they need
`x-mesh-node-token: <token>` metadata, or, where `node_identities` are configured on a router
serving mutual TLS, a client certificate whose identity matches one; in mode `off` (the default
without either) they are refused; mode `open` takes anyone and is refused off loopback.
ListNodes stays open in every mode: `mesh nodes` reads it, and it only shows what already
serves. Only the token's SHA-256 is kept, and a presented token is hashed before
`hmac.compare_digest`, so timing reveals neither content nor length.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mesh.config import RegistrySettings, is_loopback
from mesh.config.router import RegistryMode, open_registry_refusal
from mesh.contract.errors import Code, MeshError
from mesh.contract.node_token import NODE_TOKEN_HEADER, NodeToken
from mesh.contract.registration import REGISTRATION_DISABLED
from mesh.contract.tls import identity_matches


class NodeTokenMissing(MeshError):
    """A registry write came without the registration token."""

    code = Code.UNAUTHENTICATED
    reason = "NODE_TOKEN_MISSING"


class NodeTokenRejected(MeshError):
    """A registry write came with a token that is not the registration token."""

    code = Code.UNAUTHENTICATED
    reason = "NODE_TOKEN_REJECTED"


class NodeCertificateRequired(MeshError):
    """A registry write without a node certificate, on a router that takes no token."""

    code = Code.UNAUTHENTICATED
    reason = "NODE_CERTIFICATE_REQUIRED"


class RegistrationDisabled(MeshError):
    """A registry write reached a router whose registry mode is off."""

    code = Code.PERMISSION_DENIED
    reason = REGISTRATION_DISABLED


class OpenRegistrationExposed(MeshError):
    """Mode open on a listen address other machines can reach: refused at start."""

    code = Code.FAILED_PRECONDITION
    reason = "OPEN_REGISTRATION_OFF_LOOPBACK"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class NodeTokenCheck:
    """Verifies registry calls' metadata against one token; open when there is none."""

    def __init__(self, token: NodeToken | None) -> None:
        self._digest = _digest(token.value) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def __repr__(self) -> str:
        return f"NodeTokenCheck(enabled={self.enabled})"

    def verify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """Raise NodeTokenMissing / NodeTokenRejected unless the metadata carries the token."""
        if self._digest is None:
            return
        presented = next(
            (value for key, value in metadata or () if key.lower() == NODE_TOKEN_HEADER), None
        )
        if isinstance(presented, bytes):
            presented = presented.decode(errors="replace")
        if not presented:
            raise NodeTokenMissing(
                f"registry writes need the registration token ({NODE_TOKEN_HEADER} metadata)",
                metadata={"header": NODE_TOKEN_HEADER},
            )
        if not hmac.compare_digest(_digest(presented), self._digest):
            raise NodeTokenRejected(
                "the registration token given is not this router's",
                metadata={"header": NODE_TOKEN_HEADER},
            )


Metadata = Iterable[tuple[str, str | bytes]] | None


@dataclass(frozen=True)
class RegistryAccess:
    """The registry mode in force and, in mode token, the check of the token."""

    mode: RegistryMode
    token_check: NodeTokenCheck = field(default_factory=lambda: NodeTokenCheck(None))
    # Client-certificate identities that stand in for the token (mode token only).
    node_identities: tuple[str, ...] = ()

    @classmethod
    def with_token(cls, token: NodeToken) -> RegistryAccess:
        return cls("token", NodeTokenCheck(token))

    @classmethod
    def open(cls) -> RegistryAccess:
        return cls("open")

    @classmethod
    def off(cls) -> RegistryAccess:
        return cls("off")

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryAccess:
        """Resolve the mode and read the token now (TokenUnavailable names a broken source)."""
        mode, token = settings.resolved_mode()
        if mode == "token":
            # resolved_mode reads a token or raises, unless certificates are the credential.
            assert token is not None or settings.node_identities
            return cls("token", NodeTokenCheck(token), tuple(settings.node_identities))
        return cls(mode)

    def authorize(self, metadata: Metadata, peer_identities: Sequence[str] = ()) -> None:
        """Raise unless a registry write with this metadata, from a caller whose verified
        certificate holds `peer_identities` (mesh.contract.tls.peer_identities), may proceed."""
        if self.mode == "off":
            raise RegistrationDisabled(
                "this router takes no node registrations (router.registry.mode is off, the "
                "default without a registration token); ListNodes stays readable",
                metadata={"mode": "off"},
            )
        if self.mode != "token":
            return
        if identity_matches(peer_identities, self.node_identities):
            return
        if not self.token_check.enabled:  # certificates are the only credential
            raise NodeCertificateRequired(
                "registry writes need a node certificate (a client certificate whose identity "
                "is in router.registry.node_identities)",
                metadata={"credential": "node certificate"},
            )
        self.token_check.verify(metadata)

    def describe(self) -> str:
        """One phrase for the start-up log line."""
        if self.mode == "token" and self.node_identities:
            token = f"{NODE_TOKEN_HEADER} or " if self.token_check.enabled else ""
            return (
                f"token (Register, Heartbeat and Deregister need {token}a client certificate "
                f"with identity {' / '.join(self.node_identities)})"
            )
        return {
            "token": f"token (Register, Heartbeat and Deregister need {NODE_TOKEN_HEADER})",
            "open": "open (anything that reaches this loopback address may register)",
            "off": "off (mode off, or no registration token configured; static upstreams only)",
        }[self.mode]


def refuse_open_registration_off_loopback(listen: str, settings: RegistrySettings) -> None:
    """At start, before binding: mode open on an address other machines reach is an error.

    The config check covers `router.listen`; this one covers a `--listen` given at start.
    """
    if settings.mode == "open" and not is_loopback(listen):
        raise OpenRegistrationExposed(open_registry_refusal(listen), metadata={"listen": listen})
