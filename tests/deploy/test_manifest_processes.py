"""The manifests' own command lines and mesh.yaml, run as real processes on loopback.

Rendering proves the YAML is well formed; this proves what it tells the mesh to do works: the
routers' mesh.yaml from the rendered ConfigMap starts `mesh router`, the node and bridge
arguments of the rendered pods start `mesh node` and `mesh bridge`, both register with the
router through the token file, every server answers the readiness probe's grpc.health.v1
service, and a chat goes through the registered node.

Only what a laptop cannot be is changed: addresses become loopback ports, files mounted from
Secrets become files in a temp dir, the node runs the fake engine (a deterministic test engine,
not a model: the mesh's wiring is what is tested), the bridge points at a loopback stand-in
for the provider that answers only its model list (the bridge probes it for health; no chat
reaches it), and spans go to the local store instead of the in-cluster Collector.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.k8s import K8S, Obj, Pod, find, kustomize, pods
from tests.process import free_address, run_mesh, start_mesh, wait_for

POD_NAMESPACE = "inference-mesh"


class _ModelList(http.server.BaseHTTPRequestHandler):
    """The provider's `GET /v1/models`, which a bridge probes for its health; nothing else."""

    def do_GET(self) -> None:  # http.server's name for a GET handler
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def provider_url() -> Iterator[str]:
    """A loopback HTTP server answering the model list: the bridge stays healthy (an address
    nothing listens on made it NOT_SERVING at its first probe, which a slow start then saw)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelList)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _mesh_container(pod: Pod) -> Obj:
    (container,) = [c for c in pod.containers() if "command" not in c]
    return container


def _component(objs: list[Obj], component: str) -> tuple[Pod, Obj]:
    pod = next(p for p in pods(objs) if p.component == component)
    return pod, _mesh_container(pod)


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) as the kubelet expands it."""
    return [re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], a) for a in args]


def _override(args: list[str], values: dict[str, str]) -> list[str]:
    """The same command line with some `--flag=value` / `--flag value` values replaced (flags
    not present are appended)."""
    out, seen, i = [], set(), 0
    while i < len(args):
        arg = args[i]
        name, eq, _ = arg.partition("=")
        if name in values:
            seen.add(name)
            out.append(f"{name}={values[name]}")
            if not eq:
                i += 1  # skip the separate value
        else:
            out.append(arg)
        i += 1
    out += [f"{k}={v}" for k, v in values.items() if k not in seen]
    return out


def _readiness_service(container: Obj) -> str:
    """The grpc.health.v1 service the container's readinessProbe asks about."""
    return str(container["readinessProbe"]["grpc"]["service"])


def _serving(address: str, service: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _registered(router: str) -> set[str]:
    out = run_mesh("nodes", "--router", router, "--json", timeout_s=60)
    if out.returncode != 0:
        return set()
    return {json.loads(line)["node_id"] for line in out.stdout.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {"base": kustomize(K8S / "base"), "cpu": kustomize(K8S / "overlays" / "cpu")}


def test_routers_nodes_and_bridges_start_from_the_manifests(
    rendered: dict[str, list[Obj]], tmp_path: Path, provider_url: str
) -> None:
    base = rendered["base"]
    # Files the pods get from Secrets, here in a temp dir.
    token, admin, provider = tmp_path / "token", tmp_path / "admin-key", tmp_path / "openai"
    token.write_text(secrets.token_hex(32) + "\n")
    admin.write_text(secrets.token_hex(32) + "\n")
    provider.write_text("sk-test-never-sent\n")

    # The routers' mesh.yaml as rendered, with the mounted paths and the Collector replaced.
    router_pod, router_container = _component(base, "router")
    config_map = next(
        v["configMap"]["name"] for v in router_pod.spec["volumes"] if v["name"] == "config"
    )
    config = yaml.safe_load(find(base, "ConfigMap", config_map)["data"]["mesh.yaml"])
    assert config["router"]["registry"]["token_file"] == "/etc/mesh/secrets/registry/token"
    config["router"]["registry"]["token_file"] = str(token)
    config["router"]["guards"]["admin_key_file"] = str(admin)
    config["telemetry"] = {"exporters": ["span_store"], "prometheus_listen": "127.0.0.1:0"}
    assert config["router"]["http"]["listen"] == "0.0.0.0:8080"  # the Service's http port
    http_address = free_address()
    config["router"]["http"]["listen"] = http_address
    mesh_yaml = tmp_path / "mesh.yaml"
    mesh_yaml.write_text(yaml.safe_dump(config))

    router = free_address()
    # The suite turns HTTP fronts off by default (MESH_HTTP_LISTEN=off): this router serves the
    # one its mesh.yaml declares.
    env = {
        k: v for k, v in os.environ.items() if k not in {"MESH_REGISTRY_TOKEN", "MESH_HTTP_LISTEN"}
    }
    env["MESH_LOG_FORMAT"] = "text"
    router_args = _override(router_container["args"], {"--config": str(mesh_yaml)})
    assert router_args[0] == "router"

    _, node_container = _component(rendered["cpu"], "node")
    node_address = free_address()
    node_args = _override(
        _expand(
            node_container["args"],
            {"POD_NAME": "mesh-node-7c9f-x2x4q", "POD_NAMESPACE": POD_NAMESPACE},
        ),
        {
            "--engine": "fake",
            "--listen": node_address,
            "--advertise": node_address,  # here: no cluster DNS
            "--router": router,
            "--router-token-file": str(token),
            "--metrics-listen": "127.0.0.1:0",
        },
    )
    _, bridge_container = _component(base, "bridge")
    bridge_address = free_address()
    bridge_args = _override(
        _expand(
            bridge_container["args"],
            {"POD_NAME": "mesh-bridge-openai-5d8-k7m2p", "POD_NAMESPACE": POD_NAMESPACE},
        ),
        {
            "--api-key-file": str(provider),
            "--base-url": provider_url,  # answers the health probe; no chat is sent to it
            "--listen": bridge_address,
            "--advertise": bridge_address,
            "--router": router,
            "--router-token-file": str(token),
            "--metrics-listen": "127.0.0.1:0",
        },
    )

    with start_mesh(*router_args, "--listen", router, env=env, log=tmp_path / "router.log") as r:
        r.wait_until_serving(router, timeout_s=240)
        assert _serving(router, _readiness_service(router_container))
        with (
            start_mesh(*node_args, env=env, log=tmp_path / "node.log") as node,
            start_mesh(*bridge_args, env=env, log=tmp_path / "bridge.log") as bridge,
        ):
            node.wait_until_serving(node_address, timeout_s=120)
            bridge.wait_until_serving(bridge_address, timeout_s=120)
            assert _serving(node_address, _readiness_service(node_container))
            assert _serving(bridge_address, _readiness_service(bridge_container))
            wanted = {"mesh-node-7c9f-x2x4q", "mesh-bridge-openai-5d8-k7m2p"}
            wait_for(
                lambda: wanted <= _registered(router), "both registered", timeout_s=60, process=r
            )

            chat = run_mesh(
                "chat", "--target", router, "--model", "smollm2-135m-instruct", "Hello there",
                env=env, timeout_s=120,
            )  # fmt: skip
            assert chat.returncode == 0, chat.stderr + r.tail()
            assert chat.stdout.strip(), chat.stderr
            assert "mesh-node-7c9f-x2x4q" in chat.stderr, chat.stderr

            # The OpenAI-compatible HTTP front of the same router (the Service's http port).
            body = json.dumps(
                {
                    "model": "smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "Hello over HTTP"}],
                    "max_tokens": 4,
                }
            ).encode()
            post = urllib.request.Request(
                f"http://{http_address}/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(post, timeout=60) as reply:
                answer = json.loads(reply.read())
                assert reply.headers["x-mesh-node"] == "mesh-node-7c9f-x2x4q"
            assert answer["choices"][0]["message"]["content"]
    for log in ("router.log", "node.log", "bridge.log"):
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text, f"{log}:\n{text[-3000:]}"
        assert token.read_text().strip() not in text, f"the token leaked into {log}"
        assert "sk-test-never-sent" not in text
