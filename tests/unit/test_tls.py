"""TLS building blocks: development certificates, TLS config rules, the registry's certificate
credential and the plaintext-off-loopback rule (the handshakes themselves are in
tests/integration/test_tls.py)."""

from __future__ import annotations

import ipaddress
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from mesh.cli import cli
from mesh.config import (
    ClientTls,
    ConfigError,
    HttpSettings,
    RegistrySettings,
    RouterConfig,
    ServerTls,
    parse_config,
)
from mesh.contract.node_token import NODE_TOKEN_HEADER, NodeToken
from mesh.contract.tls import (
    ChannelCredentialsSource,
    PlaintextOffLoopback,
    TlsUnavailable,
    identity_matches,
    refuse_plaintext_off_loopback,
)
from mesh.dev_certs import DevCertOptions, make_dev_certs, spiffe_id
from mesh.router.exposure import refuse_plaintext_router
from mesh.router.registry_auth import (
    NodeCertificateRequired,
    NodeTokenCheck,
    NodeTokenMissing,
    RegistryAccess,
)

TOKEN = "unit-tls-token-0123456789"


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> tuple[set[str], set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(san.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
        set(san.get_values_for_type(x509.UniformResourceIdentifier)),
    )


# --- mesh certs dev -------------------------------------------------------------------------------
def test_dev_certs_hold_loopback_and_kubernetes_names_and_role_identities(tmp_path: Path) -> None:
    made = make_dev_certs(
        tmp_path,
        DevCertOptions(
            router_dns=("router.mesh.svc.cluster.local",),
            node_dns=("*.mesh-nodes.mesh.svc.cluster.local",),
            ips=("10.0.0.7",),
        ),
    )
    ca = _cert(made.ca_file)
    loopback_ips = {"127.0.0.1", "::1", "10.0.0.7"}
    router_dns, router_ips, router_uri = _names(_cert(made.router.cert_file))
    assert router_dns == {"localhost", "router.mesh.svc.cluster.local"}
    assert router_ips == loopback_ips and router_uri == {spiffe_id("router")}
    node_dns, node_ips, node_uri = _names(_cert(made.node.cert_file))
    assert node_dns == {"localhost", "*.mesh-nodes.mesh.svc.cluster.local"}
    assert node_ips == loopback_ips and node_uri == {"spiffe://inference-mesh/node"}
    client_dns, client_ips, client_uri = _names(_cert(made.client.cert_file))
    assert (client_dns, client_ips, client_uri) == (set(), set(), {spiffe_id("client")})
    for role, usages in (
        ("router", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("node", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("client", {ExtendedKeyUsageOID.CLIENT_AUTH}),
    ):
        leaf = _cert(made.role(role).cert_file)  # type: ignore[arg-type]
        assert leaf.issuer == ca.subject
        assert set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
        days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        assert 89 <= days <= 91
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    keys = [made.router.key_file, made.node.key_file, made.client.key_file, tmp_path / "ca-key.pem"]
    assert {stat.S_IMODE(key.stat().st_mode) for key in keys} == {0o600}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a rename, nothing left over


def test_running_again_reuses_the_ca_and_new_ca_replaces_it(tmp_path: Path) -> None:
    first = make_dev_certs(tmp_path)
    ca_serial = _cert(first.ca_file).serial_number
    node_serial = _cert(first.node.cert_file).serial_number
    again = make_dev_certs(tmp_path)
    assert again.ca_reused and _cert(again.ca_file).serial_number == ca_serial
    assert _cert(again.node.cert_file).serial_number != node_serial
    fresh = make_dev_certs(tmp_path, DevCertOptions(new_ca=True))
    assert not fresh.ca_reused and _cert(fresh.ca_file).serial_number != ca_serial
    with pytest.raises(ValueError, match="expires before 4000 days"):
        make_dev_certs(tmp_path, DevCertOptions(days=4000))
    with pytest.raises(ValueError):
        make_dev_certs(tmp_path / "other", DevCertOptions(ips=("not-an-ip",)))
    assert not (tmp_path / "other").exists()


def test_mesh_certs_dev_command(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli,
        ["certs", "dev", str(tmp_path / "pki"), "--router-dns", "router.mesh.svc", "--ip", "::2"],
    )
    assert out.exit_code == 0, out.output
    assert "new CA:" in out.output and f"identity {spiffe_id('node')}" in out.output
    dns, ips, _ = _names(_cert(tmp_path / "pki" / "router.pem"))
    assert "router.mesh.svc" in dns and ipaddress.ip_address("::2") in map(
        ipaddress.ip_address, ips
    )
    again = CliRunner().invoke(cli, ["certs", "dev", str(tmp_path / "pki")])
    assert again.exit_code == 0 and "reused CA:" in again.output
    bad = CliRunner().invoke(cli, ["certs", "dev", str(tmp_path / "x"), "--days", "0"])
    assert bad.exit_code == 2


# --- config ---------------------------------------------------------------------------------------
def test_tls_config_rules(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        ClientTls(cert_file=pem)
    with pytest.raises(ValidationError, match=re.escape("needs router.tls.client_ca_file")):
        RouterConfig(registry=RegistrySettings(node_identities=[spiffe_id("node")]))
    with pytest.raises(ValidationError, match=re.escape("needs router.tls.client_ca_file")):
        RouterConfig(
            tls=ServerTls(cert_file=pem, key_file=pem),  # TLS, but not mutual
            registry=RegistrySettings(node_identities=[spiffe_id("node")]),
        )
    with pytest.raises(ValidationError, match="mode open takes no node_identities"):
        RegistrySettings(mode="open", node_identities=["x"])
    mutual = ServerTls(cert_file=pem, key_file=pem, client_ca_file=pem)
    config = RouterConfig(tls=mutual, registry=RegistrySettings(node_identities=["x"]))
    assert config.tls is not None and config.tls.mutual


def test_node_identities_alone_put_the_registry_in_token_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    assert RegistrySettings(node_identities=["x"]).resolved_mode() == ("token", None)
    assert RegistrySettings(mode="token", node_identities=["x"]).resolved_mode() == ("token", None)
    assert RegistrySettings().resolved_mode() == ("off", None)


# --- the registry's certificate credential --------------------------------------------------------
NODE = spiffe_id("node")


def test_a_matching_certificate_identity_stands_in_for_the_token() -> None:
    certificate_only = RegistryAccess("token", node_identities=(NODE,))
    certificate_only.authorize((), (NODE, "mesh-node"))
    with pytest.raises(NodeCertificateRequired):
        certificate_only.authorize((), (spiffe_id("client"),))
    with pytest.raises(NodeCertificateRequired):
        certificate_only.authorize(((NODE_TOKEN_HEADER, TOKEN),), ())  # no token is configured
    assert "client certificate with identity" in certificate_only.describe()

    either = RegistryAccess("token", NodeTokenCheck(NodeToken(TOKEN)), (NODE,))
    either.authorize((), (NODE,))
    either.authorize(((NODE_TOKEN_HEADER, TOKEN),), ())
    with pytest.raises(NodeTokenMissing):
        either.authorize((), (spiffe_id("client"),))


def test_identity_patterns_glob() -> None:
    assert identity_matches(["spiffe://inference-mesh/node"], ["spiffe://inference-mesh/*"])
    assert identity_matches(["n1.nodes.svc"], ["*.nodes.svc"])
    assert not identity_matches(["spiffe://other/node"], ["spiffe://inference-mesh/*"])
    assert not identity_matches([], ["*"])


# --- plaintext off loopback -----------------------------------------------------------------------
def test_plaintext_off_loopback_is_refused_unless_tls_insecure_or_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_REGISTRY_TOKEN", raising=False)
    pem = tmp_path / "x.pem"
    tls = ServerTls(cert_file=pem, key_file=pem)
    refuse_plaintext_router(RouterConfig(), "127.0.0.1:50051")
    refuse_plaintext_router(RouterConfig(), "[::1]:50051")
    with pytest.raises(
        PlaintextOffLoopback, match=re.escape("the router would listen on 0.0.0.0:1")
    ):
        refuse_plaintext_router(RouterConfig(), "0.0.0.0:1")
    refuse_plaintext_router(RouterConfig(tls=tls), "0.0.0.0:1")
    refuse_plaintext_router(RouterConfig(insecure=True), "0.0.0.0:1")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    refuse_plaintext_router(
        RouterConfig(registry=RegistrySettings(token_file=token_file)), "0.0.0.0:1"
    )
    exposed_http = RouterConfig(tls=tls, http=HttpSettings(listen="0.0.0.0:8080"))
    with pytest.raises(
        PlaintextOffLoopback, match=re.escape("HTTP front would listen on 0.0.0.0:8080")
    ):
        refuse_plaintext_router(exposed_http, "0.0.0.0:1")
    refuse_plaintext_router(
        RouterConfig(http=HttpSettings(listen="0.0.0.0:8080", tls=tls), tls=tls), "0.0.0.0:1"
    )
    with pytest.raises(PlaintextOffLoopback, match="--insecure"):
        refuse_plaintext_off_loopback("node n1", "10.1.2.3:50061", None, insecure=False)
    refuse_plaintext_off_loopback("node n1", "10.1.2.3:50061", None, insecure=True)
    refuse_plaintext_off_loopback("node n1", "localhost:50061", None, insecure=False)


# --- files that cannot serve ----------------------------------------------------------------------
def test_broken_tls_files_are_named_never_quoted(tmp_path: Path) -> None:
    made = make_dev_certs(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        (ClientTls(ca_file=tmp_path / "nope.pem"), "cannot read CA"),
        (ClientTls(ca_file=garbage), "holds no PEM certificate"),
        (
            ClientTls(cert_file=made.client.cert_file, key_file=made.node.key_file),
            "does not match key",
        ),
        (ClientTls(cert_file=made.client.cert_file, key_file=made.client.cert_file), "not an"),
    ]
    for tls, fault in cases:
        with pytest.raises(TlsUnavailable, match=fault) as info:
            ChannelCredentialsSource(tls, "unit").load()
        assert "BEGIN" not in str(info.value) and str(info.value).startswith("unit: ")


def test_mesh_yaml_router_and_its_nodes_agree_on_tls(tmp_path: Path) -> None:
    tls = f"{{cert_file: {tmp_path}/n.pem, key_file: {tmp_path}/n-key.pem}}"
    upstream = f"{{ca_file: {tmp_path}/ca.pem}}"
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.tls is set but router\.upstream_tls"):
        parse_config(f"nodes: [{{id: n1, engine: fake, tls: {tls}}}]")
    with pytest.raises(ConfigError, match=r"router\.upstream_tls is set but nodes\[0\]\.tls"):
        parse_config(f"router: {{upstream_tls: {upstream}}}\nnodes: [{{id: n1, engine: fake}}]")
    both = parse_config(
        f"router: {{upstream_tls: {upstream}}}\nnodes: [{{id: n1, engine: fake, tls: {tls}}}]"
    )
    assert both.nodes[0].tls is not None
