"""`mesh certs dev DIR`: a development CA and the router, node and client certificates."""

from __future__ import annotations

from pathlib import Path

import click

from mesh.cli.options import FieldDefault

DEFAULTS = "mesh.dev_certs:DevCertOptions"


@click.group("certs")
def certs() -> None:
    """Certificates for TLS and mutual TLS between mesh processes."""


@certs.command("dev")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--router-dns", multiple=True, metavar="NAME",
              help="Another DNS name of the router certificate, e.g. "
              "router.mesh.svc.cluster.local (repeatable).")  # fmt: skip
@click.option("--node-dns", multiple=True, metavar="NAME",
              help="Another DNS name of the node certificate, e.g. "
              "'*.mesh-nodes.mesh.svc.cluster.local' (repeatable).")  # fmt: skip
@click.option("--ip", "ips", multiple=True, metavar="ADDR",
              help="Another IP address of both server certificates (repeatable).")  # fmt: skip
@click.option("--days", type=int, default=FieldDefault(DEFAULTS, "days"), show_default=True,
              help="Validity of the router, node and client certificates.")  # fmt: skip
@click.option("--trust-domain", type=str, default=FieldDefault(DEFAULTS, "trust_domain"),
              show_default=True, help="Identities are spiffe://<trust domain>/<role>.")  # fmt: skip
@click.option("--new-ca", is_flag=True,
              help="Make a new CA even if DIRECTORY holds one (every certificate signed by the "
              "old one stops being trusted).")  # fmt: skip
def dev(
    directory: Path,
    router_dns: tuple[str, ...],
    node_dns: tuple[str, ...],
    ips: tuple[str, ...],
    days: int,
    trust_domain: str,
    new_ca: bool,
) -> None:
    """Make a development CA and router, node and client certificates in DIRECTORY.

    Server certificates hold localhost, 127.0.0.1 and ::1 besides the names given. A CA
    already in DIRECTORY is reused, so running this again rotates the certificates: servers
    pick the new files up without a restart. Keys are written 0600. For development and tests;
    production certificates come from your CA (cert-manager, for example).
    """
    from mesh.dev_certs import DevCertOptions, make_dev_certs, spiffe_id

    if days < 1:
        raise click.BadParameter("must be at least 1", param_hint="--days")
    try:
        options = DevCertOptions(
            router_dns=router_dns,
            node_dns=node_dns,
            ips=ips,
            days=days,
            trust_domain=trust_domain,
            new_ca=new_ca,
        )
        made = make_dev_certs(directory, options)
    except ValueError as exc:  # an unusable --ip, or a CA that expires too soon
        raise click.UsageError(str(exc)) from None
    click.echo(f"{'reused' if made.ca_reused else 'new'} CA: {made.ca_file}")
    for role in ("router", "node", "client"):
        files = made.role(role)
        click.echo(
            f"{role}: {files.cert_file} (key {files.key_file}), "
            f"identity {spiffe_id(role, trust_domain)}"
        )
