"""`mesh health`: ask a server's grpc.health.v1 service, over TLS when told, and say so in
the exit code.

Kubelet's built-in gRPC probe (and most load balancers' checks) cannot present a client
certificate or verify a server's, so a mesh that serves mutual TLS needs an exec probe that
can: `mesh health 127.0.0.1:50051 --tls-ca ... --tls-cert ... --tls-key ...`. Exit codes are
grpc_health_probe's idea: 0 SERVING; 1 anything else (NOT_SERVING, UNKNOWN, no answer: the
error boundary's one line says which); 2 when the server does not know the service asked for.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import click

from mesh.cli.errors import CommandFailed
from mesh.cli.options import client_tls_options, json_option, target_option

if TYPE_CHECKING:
    from mesh.config import ClientTls


@click.command("health")
@target_option("--target", help="The server to ask: a router, node or bridge.")
@click.option(
    "--service",
    default="",
    show_default=True,
    help="A service name (e.g. mesh.v1.InferenceService); empty: the server as a whole.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answer (a probe's own timeout should be longer).",
)
@json_option('One JSON object: {"target", "service", "status"}.')
@client_tls_options
def health(
    target: str, service: str, timeout_s: float, as_json: bool, tls: ClientTls | None
) -> None:
    """Check a server's health (grpc.health.v1): exit 0 when SERVING, for probes and scripts."""
    status = asyncio.run(_check(target, service, timeout_s, tls))
    if as_json:
        click.echo(json.dumps({"target": target, "service": service, "status": status}))
    else:
        click.echo(status)
    if status != "SERVING":
        raise CommandFailed(f"{target} {service or '(server)'} is {status}")


async def _check(target: str, service: str, timeout_s: float, tls: ClientTls | None) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mesh.client import open_channel

    async with open_channel(target, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
