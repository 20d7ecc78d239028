"""TLS credentials for every mesh server and channel, from files that may be rotated live.

Servers: gRPC's dynamic server credentials ask a fetcher for the certificate configuration on
every new connection; the fetcher stats the files and re-reads them only when one changed
(mtime, size, inode), so a rotated certificate (cert-manager writing a Secret volume, `mesh
certs dev` run again) reaches new connections without a restart and existing ones are left as
they are. The HTTP front gets the same from an `ssl.SSLContext` whose SNI callback (called for
every ClientHello, with or without a server name) swaps in a freshly built context.

Channels: gRPC channels take their credentials when they are created, so a
`ChannelCredentialsSource` hands out credentials with a generation number that moves when the
files change, and the owner of a long-lived channel opens a new one then.

A change is used only once it is whole: a key that does not match its certificate (a rotation
caught half-written), an unreadable file or an expired certificate keeps the previous
credentials and logs one warning naming the file. At start the same faults are errors
(`TlsUnavailable`). No message ever contains key material.

`cryptography` (certificate and key checks) is imported only where TLS is configured.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from mesh.config.tls import ClientTls, ServerTls, plaintext_exposed, plaintext_refusal
from mesh.contract.errors import Code, MeshError

log = logging.getLogger(__name__)

T = TypeVar("T")
Stamp = tuple[tuple[int, int, int] | None, ...]


class TlsUnavailable(ValueError):
    """A configured TLS file is missing, unreadable, malformed, expired or does not match its
    key. The message names the file and the fault, never its content."""


class PlaintextOffLoopback(MeshError):
    """A server would listen in plaintext on an address other machines reach: refused at start
    unless its config says `insecure: true`."""

    code = Code.FAILED_PRECONDITION
    reason = "PLAINTEXT_OFF_LOOPBACK"


NODE_SWITCH = "insecure: true (mesh node / mesh bridge --insecure)"


def refuse_plaintext_off_loopback(
    what: str,
    listen: str,
    tls: ServerTls | None,
    *,
    insecure: bool,
    also: str = "",
    switch: str = NODE_SWITCH,
) -> None:
    """Before binding: raise PlaintextOffLoopback when `listen` is off loopback without TLS
    and without `insecure`; `switch` names the setting that allows it."""
    if plaintext_exposed(listen, tls, insecure):
        raise PlaintextOffLoopback(
            plaintext_refusal(what, listen, also=also, switch=switch), metadata={"listen": listen}
        )


def check_server_files(tls: ServerTls, what: str) -> None:
    """Read and check a server's TLS files now (TlsUnavailable names the one at fault): a
    process that loads a model first can fail before it, not after."""
    _server_pem(tls, what)


# -- reading and checking files -------------------------------------------------------------
def _read(path: Path, what: str, role: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsUnavailable(f"{what}: cannot read {role} {path}: {exc.strerror}") from None
    if not data.strip():
        raise TlsUnavailable(f"{what}: {role} {path} is empty")
    return data


def _certificates(pem: bytes, path: Path, what: str, role: str) -> list[Any]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TlsUnavailable(f"{what}: {role} {path} holds no PEM certificate") from None
    return certs


def _check_pair(chain: bytes, key: bytes, tls_files: tuple[Path, Path], what: str) -> None:
    """The leaf must match the key and be valid now."""
    from cryptography.hazmat.primitives import serialization

    cert_file, key_file = tls_files
    leaf = _certificates(chain, cert_file, what, "certificate")[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise TlsUnavailable(
            f"{what}: key {key_file} is not an unencrypted PEM private key"
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise TlsUnavailable(f"{what}: certificate {cert_file} does not match key {key_file}")
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc < now:
        raise TlsUnavailable(
            f"{what}: certificate {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
        )
    if leaf.not_valid_before_utc > now:
        raise TlsUnavailable(
            f"{what}: certificate {cert_file} is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
        )


def _stamp(paths: Sequence[Path]) -> Stamp:
    """What identifies the files' current content without reading it."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class _Reloader(Generic[T]):
    """Builds a value from files, and builds it again when the files change.

    Thread-safe: gRPC calls server certificate fetchers from its own threads.
    """

    def __init__(self, paths: Sequence[Path], build: Callable[[], T], what: str) -> None:
        self._paths = tuple(paths)
        self._build = build
        self._what = what
        self._lock = threading.Lock()
        self._loaded: Stamp | None = None
        self._failed: Stamp | None = None
        self.generation = 0

    def initial(self) -> T:
        """The first value; TlsUnavailable (or ssl.SSLError) when the files cannot serve."""
        with self._lock:
            stamp = _stamp(self._paths)
            value = self._build()
            self._loaded = stamp
            return value

    def changed(self) -> T | None:
        """A new value when the files changed since the last one was built, else None."""
        stamp = _stamp(self._paths)
        if stamp == self._loaded or stamp == self._failed:
            return None
        with self._lock:
            if stamp == self._loaded or stamp == self._failed:
                return None
            try:
                value = self._build()
            except (TlsUnavailable, ssl.SSLError, OSError, ValueError) as exc:
                self._failed = stamp
                # TlsUnavailable names file and fault; anything else by its type only (an
                # OpenSSL message could quote what it was parsing).
                why = str(exc) if isinstance(exc, TlsUnavailable) else type(exc).__name__
                log.warning(
                    "%s: changed TLS files not used, keeping the previous ones: %s", self._what, why
                )
                return None
            self._loaded, self._failed = stamp, None
            self.generation += 1
            log.info("%s: TLS files changed; new connections use them", self._what)
            return value


def _server_pem(tls: ServerTls, what: str) -> tuple[bytes, bytes, bytes | None]:
    chain = _read(tls.cert_file, what, "certificate")
    key = _read(tls.key_file, what, "key")
    _check_pair(chain, key, (tls.cert_file, tls.key_file), what)
    ca = None
    if tls.client_ca_file is not None:
        ca = _read(tls.client_ca_file, what, "client CA")
        _certificates(ca, tls.client_ca_file, what, "client CA")
    return key, chain, ca


def _server_paths(tls: ServerTls) -> list[Path]:
    return [tls.cert_file, tls.key_file, *([tls.client_ca_file] if tls.client_ca_file else [])]


# -- servers --------------------------------------------------------------------------------
def server_credentials(tls: ServerTls, what: str) -> grpc.ServerCredentials:
    """gRPC server credentials that follow rotated files; mutual TLS with a client CA.

    Reads the files now: TlsUnavailable names the one at fault before anything binds.
    """

    def build() -> Any:
        key, chain, ca = _server_pem(tls, what)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    reloader = _Reloader(_server_paths(tls), build, what)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial(),
        reloader.changed,  # None: keep serving the configuration in use
        require_client_authentication=tls.mutual,
    )


def server_ssl_context(tls: ServerTls, what: str) -> ssl.SSLContext:
    """An SSLContext for an asyncio HTTP/1.1 server (the HTTP front) that follows rotated files.

    Every handshake passes the SNI callback, which swaps in a context built from the current
    files: new connections get the new certificate (and client CA), open ones keep theirs.
    """

    def build() -> ssl.SSLContext:
        _, _, ca = _server_pem(tls, what)  # the checks, with messages that name the file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if ca is not None:
            context.load_verify_locations(cadata=ca.decode("ascii", errors="replace"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    reloader = _Reloader(_server_paths(tls), build, what)
    base = reloader.initial()
    current = [base]

    def pick_current(connection: Any, _server_name: str | None, _context: Any) -> None:
        fresh = reloader.changed()
        if fresh is not None:
            current[0] = fresh
        if current[0] is not base:
            connection.context = current[0]

    base.sni_callback = pick_current
    return base


# -- channels -------------------------------------------------------------------------------
def _client_pem(tls: ClientTls, what: str) -> tuple[bytes | None, bytes | None, bytes | None]:
    ca = None
    if tls.ca_file is not None:
        ca = _read(tls.ca_file, what, "CA")
        _certificates(ca, tls.ca_file, what, "CA")
    key = chain = None
    if tls.cert_file is not None and tls.key_file is not None:
        chain = _read(tls.cert_file, what, "certificate")
        key = _read(tls.key_file, what, "key")
        _check_pair(chain, key, (tls.cert_file, tls.key_file), what)
    return ca, key, chain


def channel_credentials(tls: ClientTls, what: str = "client") -> grpc.ChannelCredentials:
    """Credentials for one channel, read now (a CLI call; long-lived channels use a source)."""
    ca, key, chain = _client_pem(tls, what)
    return grpc.ssl_channel_credentials(ca, key, chain)


def tls_channel_options(tls: ClientTls | None) -> list[tuple[str, Any]]:
    """Channel options TLS needs: the name to verify, when it is not the host dialled."""
    if tls is None or tls.server_name is None:
        return []
    return [("grpc.ssl_target_name_override", tls.server_name)]


class ChannelCredentialsSource:
    """Channel credentials from files, with a generation that moves when the files change.

    Owners of long-lived channels compare `current()`'s generation with the one their channel
    was opened with and open a new channel when it moved. The router asks once per call
    attempt; the files are looked at (three stats, 5.5 us here) at most every
    CHECK_INTERVAL_S, so a rotation is seen within a second at ~0.1 us a call.
    """

    CHECK_INTERVAL_S = 1.0

    def __init__(self, tls: ClientTls, what: str) -> None:
        self.tls = tls
        paths = [p for p in (tls.ca_file, tls.cert_file, tls.key_file) if p is not None]

        def build() -> grpc.ChannelCredentials:
            return channel_credentials(tls, what)

        self._reloader = _Reloader(paths, build, what)
        self._credentials: grpc.ChannelCredentials | None = None
        self._next_check = 0.0

    def load(self) -> None:
        """Read the files now (TlsUnavailable names the one at fault)."""
        if self._credentials is None:
            self._credentials = self._reloader.initial()

    def current(self) -> tuple[int, grpc.ChannelCredentials]:
        """(generation, credentials) from the files as they are now."""
        self.load()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.CHECK_INTERVAL_S
            fresh = self._reloader.changed()
            if fresh is not None:
                self._credentials = fresh
        assert self._credentials is not None
        return self._reloader.generation, self._credentials

    def options(self) -> list[tuple[str, Any]]:
        return tls_channel_options(self.tls)


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    *,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A secure channel with credentials, else a plaintext one."""
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, credentials, options=list(options), interceptors=interceptors
    )


# -- who is calling -------------------------------------------------------------------------
def peer_identities(context: Any) -> tuple[str, ...]:
    """The verified certificate identities of a gRPC caller: its subject alternative names
    (URI, DNS, IP) and subject common name; () on plaintext or without a client certificate."""
    auth = context.auth_context() or {}
    if b"ssl" not in auth.get("transport_security_type", ()):
        return ()
    values = [*auth.get("x509_subject_alternative_name", ()), *auth.get("x509_common_name", ())]
    return tuple(dict.fromkeys(v.decode("utf-8", errors="replace") for v in values))


def identity_matches(identities: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether any identity matches any pattern (`*` and `?` globs, case-sensitive)."""
    return any(fnmatch.fnmatchcase(i, p) for i in identities for p in patterns)
