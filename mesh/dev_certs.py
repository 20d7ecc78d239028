"""A development certificate authority and the certificates a mesh needs, for `mesh certs dev`.

One CA signs three leaves: `router` and `node` (server certificates that also authenticate as
clients: the router dials nodes with its own, a node registers with its own) and `client`
(callers such as `mesh chat`). Each leaf names its role in a URI SAN,
`spiffe://<trust domain>/<role>`: that is the identity `router.registry.node_identities`
matches, since DNS names and addresses are shared by every server on one machine. Server
certificates hold the loopback names (localhost, 127.0.0.1, ::1) and any extra DNS names, such
as Kubernetes service names (`router.mesh.svc.cluster.local`,
`*.mesh-nodes.mesh.svc.cluster.local`).

Keys are ECDSA P-256 (small and fast to verify; every TLS stack in use here takes them),
written 0600. Files are replaced atomically, so a server that reloads rotated files never reads
half of one. An existing CA in the directory is reused: running again re-issues the leaves
under the same trust, which is what a rotation is.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Role = Literal["router", "node", "client"]
ROLES: tuple[Role, ...] = ("router", "node", "client")
DEFAULT_TRUST_DOMAIN = "inference-mesh"
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")
CA_DAYS = 365
LEAF_DAYS = 90  # cert-manager's default duration: rotation is routine, not an event
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
# Issued certificates start a little in the past: a peer whose clock is slightly behind must
# not see a certificate that is "not yet valid".
CLOCK_SKEW = dt.timedelta(minutes=5)


def spiffe_id(role: Role, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    """The identity a leaf of `role` carries (URI SAN)."""
    return f"spiffe://{trust_domain}/{role}"


@dataclass(frozen=True)
class CertFiles:
    """Where one issued certificate and its key were written."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Authority:
    """A CA that can sign: its certificate, key and where its certificate lives."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path


@dataclass(frozen=True)
class DevCerts:
    """Everything `make_dev_certs` wrote."""

    ca_file: Path
    router: CertFiles
    node: CertFiles
    client: CertFiles
    ca_reused: bool

    def role(self, role: Role) -> CertFiles:
        return {"router": self.router, "node": self.node, "client": self.client}[role]


def write_atomic(path: Path, data: bytes, *, private: bool) -> None:
    """Write `data` to `path` through a temporary file and a rename (0600 when private)."""
    tmp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        # An existing temporary file keeps its old mode through O_CREAT: set it explicitly.
        os.fchmod(fd, 0o600 if private else 0o644)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inference Mesh (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_authority(
    directory: Path, *, days: int = CA_DAYS, now: dt.datetime | None = None
) -> Authority:
    """A new CA, written to DIRECTORY/ca.pem and ca-key.pem (0600)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Inference Mesh development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / CA_KEY_FILE, _key_pem(key), private=True)
    write_atomic(directory / CA_FILE, _cert_pem(cert), private=False)
    return Authority(cert, key, directory / CA_FILE)


def load_authority(directory: Path) -> Authority | None:
    """The CA already in DIRECTORY, or None when there is none."""
    cert_file, key_file = directory / CA_FILE, directory / CA_KEY_FILE
    if not (cert_file.exists() and key_file.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_file} is not an EC private key made by `mesh certs dev`")
    return Authority(cert, key, cert_file)


def _alt_names(
    role: Role, dns: Sequence[str], ips: Sequence[str], trust_domain: str
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(role, trust_domain))]
    if role != "client":
        names += [x509.DNSName(name) for name in dict.fromkeys([*LOOPBACK_DNS, *dns])]
        names += [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys([*LOOPBACK_IPS, *ips])
        ]
    return names


def issue(
    authority: Authority,
    directory: Path,
    role: Role,
    *,
    name: str | None = None,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertFiles:
    """Sign a leaf of `role`, written to DIRECTORY/<name>.pem and <name>-key.pem (0600).

    Server roles (router, node) are valid for serverAuth and clientAuth and hold the loopback
    names plus `dns` and `ips`; a client holds only its identity. `not_before`/`not_after`
    default to now and LEAF_DAYS from now (a test makes an expired one by passing the past).
    """
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - CLOCK_SKEW
    end = not_after or now + dt.timedelta(days=LEAF_DAYS)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role != "client":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"mesh-{role}"))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(_alt_names(role, dns, ips, trust_domain)), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    stem = name or role
    files = CertFiles(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    directory.mkdir(parents=True, exist_ok=True)
    # Key first: a reloading server that sees the new certificate sees its key too (it also
    # checks that the two match before using them).
    write_atomic(files.key_file, _key_pem(key), private=True)
    write_atomic(files.cert_file, _cert_pem(cert), private=False)
    return files


@dataclass(frozen=True)
class DevCertOptions:
    """What `mesh certs dev` lets a user choose."""

    router_dns: Sequence[str] = ()
    node_dns: Sequence[str] = ()
    ips: Sequence[str] = ()
    days: int = LEAF_DAYS
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    new_ca: bool = False


def make_dev_certs(directory: Path, options: DevCertOptions | None = None) -> DevCerts:
    """A CA (reused if DIRECTORY holds one, unless `new_ca`) and router, node, client leaves.

    ValueError for an IP that is not one, or a reused CA that expires before the leaves would.
    """
    options = options or DevCertOptions()
    for ip in options.ips:
        ipaddress.ip_address(ip)  # ValueError names it, before anything is written
    authority = None if options.new_ca else load_authority(directory)
    reused = authority is not None
    if authority is None:
        authority = create_authority(directory, days=max(CA_DAYS, options.days))
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=options.days)
    if until > authority.certificate.not_valid_after_utc:
        raise ValueError(
            f"the CA in {directory} expires before {options.days} days from now: "
            "make a new one (--new-ca) or issue shorter certificates (--days)"
        )

    def leaf(role: Role, dns: Sequence[str]) -> CertFiles:
        assert authority is not None
        return issue(
            authority,
            directory,
            role,
            dns=dns,
            ips=options.ips,
            trust_domain=options.trust_domain,
            not_after=until,
        )

    return DevCerts(
        ca_file=authority.cert_file,
        router=leaf("router", options.router_dns),
        node=leaf("node", options.node_dns),
        client=leaf("client", ()),
        ca_reused=reused,
    )
