"""`mesh demo`: a real mesh on this machine, three routed prompts, then a clean shutdown."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import click
import grpc.aio

from mesh.client import ChatOptions, describe_route, generate, generate_stream, open_channel
from mesh.config import MeshConfig
from mesh.contract.status import error_details
from mesh.embedded import EmbeddedMesh
from nodes.assets import model_path


@dataclass(frozen=True)
class DemoPrompt:
    prompt: str
    stream: bool
    model: str = "auto"


PROMPTS = (
    DemoPrompt("What is the capital of France?", stream=False),
    DemoPrompt("Write a short poem about the sea.", stream=True),
    DemoPrompt("Give me two tips for writing clear emails.", stream=False, model="smollm2"),
)


def _heading(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


async def run_demo(config: MeshConfig) -> int:
    """Returns the process exit code."""
    _heading("preparing models")
    for node in config.nodes:
        if node.engine != "fake":
            click.echo(f"{node.model}: {model_path(node.model)}")
    mesh = EmbeddedMesh(config, listen="127.0.0.1:0")
    _heading("starting the embedded mesh")
    started = time.perf_counter()
    address = await mesh.start()
    click.echo(
        f"router on {address}; nodes: "
        + ", ".join(
            f"{n.config.id} ({n.config.engine}, {n.config.model}) on {n.address}"
            for n in mesh.nodes
        )
        + f"  [{time.perf_counter() - started:.1f}s]"
    )
    failures = 0
    try:
        async with open_channel(address) as channel:
            for i, item in enumerate(PROMPTS, start=1):
                mode = "streamed" if item.stream else "unary"
                _heading(f"prompt {i} ({mode}, model={item.model}): {item.prompt}")
                options = ChatOptions(
                    model=item.model, max_tokens=64, temperature=0.0, timeout_s=300
                )
                try:
                    await _ask(channel, item, options)
                except grpc.aio.AioRpcError as err:
                    failures += 1
                    details = error_details(err)
                    click.secho(
                        f"failed: {details.code} {details.reason}: {details.message}", fg="red"
                    )
    finally:
        _heading("shutting down")
        await mesh.stop(grace_s=5.0)
        click.echo("stopped cleanly")
    return 1 if failures else 0


async def _ask(channel: grpc.aio.Channel, item: DemoPrompt, options: ChatOptions) -> None:
    if not item.stream:
        reply = await generate(channel, item.prompt, options)
        click.echo(reply.text.strip())
        for line in describe_route(reply.route, reply.usage):
            click.secho(line, dim=True)
        return
    started = time.perf_counter()
    first_token_s = None
    async for event in generate_stream(channel, item.prompt, options):
        if event.HasField("delta"):
            if first_token_s is None:
                first_token_s = time.perf_counter() - started
            click.echo(event.delta.text, nl=False)
            sys.stdout.flush()
        else:
            click.echo()
            for line in describe_route(event.summary.route, event.summary.usage):
                click.secho(line, dim=True)
            if first_token_s is not None:
                click.secho(f"        first token after {first_token_s * 1000:.0f} ms", dim=True)
