"""`mesh chat`: one prompt through a router (or a node), printing the answer and its route."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from mesh.cli.options import (
    FieldDefault,
    api_key_option,
    client_tls_options,
    json_option,
    target_option,
)

if TYPE_CHECKING:
    from mesh.client import ChatOptions
    from mesh.config import ClientTls

CHAT_OPTIONS = "mesh.client:ChatOptions"


@click.command()
@click.argument("prompt")
@target_option(help="Router or node address.")
@click.option(
    "--model",
    type=str,
    default=FieldDefault(CHAT_OPTIONS, "model"),
    show_default=True,
    help="'auto' or a model id/alias to pin.",
)
@click.option("--stream", is_flag=True, help="Print tokens as they arrive.")
@json_option("Print the response message as JSON.")
@click.option("--max-tokens", type=int, default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--system", default=None, help="A system prompt.")
@click.option(
    "--timeout",
    type=float,
    default=FieldDefault(CHAT_OPTIONS, "timeout_s"),
    show_default=True,
    help="Deadline in seconds.",
)
@api_key_option
@client_tls_options
def chat(
    prompt: str,
    target: str,
    model: str,
    stream: bool,
    as_json: bool,
    max_tokens: int | None,
    temperature: float | None,
    system: str | None,
    timeout: float,
    api_key: str | None,
    tls: ClientTls | None,
) -> None:
    """Send one prompt through the mesh and print the answer and its route."""
    from mesh.client import ChatOptions

    options = ChatOptions(
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        system=system,
        timeout_s=timeout,
        api_key=api_key or None,
    )
    asyncio.run(_chat(target, prompt, options, stream=stream, as_json=as_json, tls=tls))


async def _chat(
    target: str,
    prompt: str,
    options: ChatOptions,
    *,
    stream: bool,
    as_json: bool,
    tls: ClientTls | None,
) -> None:
    from google.protobuf import json_format

    from mesh.client import (
        describe_route,
        describe_verdicts,
        generate,
        generate_stream,
        open_channel,
    )

    async with open_channel(target, tls) as channel:
        if not stream:
            reply = await generate(channel, prompt, options)
            if as_json:
                click.echo(json_format.MessageToJson(reply, indent=2))
                return
            click.echo(reply.text)
            for line in describe_route(reply.route, reply.usage) + describe_verdicts(
                reply.guard_verdicts
            ):
                click.echo(line, err=True)
            return
        async for event in generate_stream(channel, prompt, options):
            if as_json:
                click.echo(json_format.MessageToJson(event, indent=None))
            elif event.HasField("delta"):
                click.echo(event.delta.text, nl=False)
                sys.stdout.flush()
            else:
                click.echo()
                summary = event.summary
                for line in describe_route(summary.route, summary.usage) + describe_verdicts(
                    summary.guard_verdicts
                ):
                    click.echo(line, err=True)
