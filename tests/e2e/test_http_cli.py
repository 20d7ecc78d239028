"""The HTTP front end to end: `mesh up --http-listen` with the real SmolLM2 node, read by `curl -N`
(the SSE framing byte for byte) and by the README's openai snippet; `mesh router --http-listen`
over an empty routing table."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.process import free_address, free_port, start_mesh

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def http_up(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[str]:
    """`mesh up` with its HTTP front on a free port; yields that host:port."""
    port, http = free_port(), free_address()
    root = tmp_path_factory.mktemp("http-e2e")
    config = root / "mesh.yaml"
    config.write_text(
        f"""
router:
  listen: 127.0.0.1:{port}
nodes:
  - id: e2e-node
    engine: transformers
    model: smollm2-135m-instruct
    input_price_per_mtok: 0.02
    output_price_per_mtok: 0.04
"""
    )
    up = start_mesh("up", "--config", str(config), "--http-listen", http, log=root / "up.log")
    with up:
        up.wait_until_serving(f"127.0.0.1:{port}")  # the HTTP front starts before SERVING
        up.wait_for_output(f"OpenAI-compatible HTTP on {http}", timeout_s=30)
        yield http
        assert up.stop() == 0, up.tail()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    curl = shutil.which("curl")
    assert curl, "curl is needed for the SSE framing test"
    return subprocess.run(
        [curl, "-sS", "--max-time", "120", *args], capture_output=True, text=True, timeout=150
    )


def test_curl_sees_openai_sse_framing(http_up: str) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "Name three colors."}],
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = _curl(
        "-N", "-i", f"http://{http_up}/v1/chat/completions",
        "-H", "content-type: application/json", "-d", json.dumps(body),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    head, _, stream = out.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: text/event-stream" in head.lower()
    events = stream.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"  # every event ends with a blank line
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-2])
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_the_readme_snippet_works_against_mesh_up(http_up: str) -> None:
    client = openai.OpenAI(base_url=f"http://{http_up}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert [m.id for m in client.models.list().data] == ["smollm2-135m-instruct"]


def test_mesh_router_http_listen_over_an_empty_table(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    config = tmp_path / "router.yaml"
    config.write_text(
        f"""
router:
  listen: 127.0.0.1:{port}
  routing: {{estimator: {{embeddings: false}}}}
  cache: {{semantic: false}}
telemetry: {{prometheus_listen: null}}
"""
    )
    with start_mesh(
        "router", "--config", str(config), "--http-listen", f"127.0.0.1:{http_port}",
        log=tmp_path / "router.log",
    ) as router:  # fmt: skip
        router.wait_until_serving(f"127.0.0.1:{port}", timeout_s=120)
        out = _curl(f"http://127.0.0.1:{http_port}/v1/models")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"object": "list", "data": []}
        assert router.stop() == 0, router.tail()
