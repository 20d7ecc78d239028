"""TLS from the command line: `mesh certs dev`, a `mesh node` serving mutual TLS, `mesh chat`
with and without the client flags, and the refusals that are one line each.

The node runs `--engine fake` (a deterministic test engine, named as such): what is under test
is the flags, the files and the handshakes, not a model.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from tests.process import free_address, run_mesh, start_mesh

pytestmark = pytest.mark.timeout(240)


def _one_mesh_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "ready" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("mesh: ")]
    return line


async def test_certs_dev_then_a_mutual_tls_node_answers_mesh_chat_only_with_a_certificate(
    tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    made = await asyncio.to_thread(run_mesh, "certs", "dev", str(pki), "--node-dns", "node.local")
    assert made.returncode == 0, made.stderr
    assert "new CA:" in made.stdout and "spiffe://inference-mesh/node" in made.stdout
    for key in ("ca-key.pem", "router-key.pem", "node-key.pem", "client-key.pem"):
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600

    address = free_address()
    node = start_mesh(
        "node", "--engine", "fake", "--node-id", "tls-node", "--listen", address,
        "--metrics-listen", "off", "--tls-cert", str(pki / "node.pem"),
        "--tls-key", str(pki / "node-key.pem"), "--tls-client-ca", str(pki / "ca.pem"),
        log=tmp_path / "node.log",
    )  # fmt: skip
    async with node:
        await node.wait_for_output_async(r"node tls-node ready on")
        client = ["--tls-ca", str(pki / "ca.pem")]
        client += ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client-key.pem")]
        answered = await asyncio.to_thread(
            run_mesh, "chat", "--target", address, *client, "--max-tokens", "3", "one two three"
        )
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip() == "one two three"
        assert "node=tls-node" in answered.stderr

        plaintext = await asyncio.to_thread(run_mesh, "chat", "--target", address, "hello")
        assert _one_mesh_line(plaintext.stderr).startswith("mesh: UNAVAILABLE")
        no_certificate = await asyncio.to_thread(
            run_mesh, "chat", "--target", address, *client[:2], "hello"
        )
        assert _one_mesh_line(no_certificate.stderr).startswith("mesh: UNAVAILABLE")
        assert plaintext.returncode == no_certificate.returncode == 1

        # `mesh health`, the exec probe a TLS pod needs (kubelet's gRPC probe has no certificate).
        serving = await asyncio.to_thread(run_mesh, "health", "--target", address, *client)
        assert (serving.returncode, serving.stdout.strip()) == (0, "SERVING"), serving.stderr
        service = await asyncio.to_thread(
            run_mesh, "health", "--target", address, *client, "--json",
            "--service", "mesh.v1.InferenceService",
        )  # fmt: skip
        assert service.returncode == 0, service.stderr
        assert service.stdout.strip() == (
            f'{{"target": "{address}", "service": "mesh.v1.InferenceService", "status": "SERVING"}}'
        )
        unknown = await asyncio.to_thread(
            run_mesh, "health", "--target", address, *client, "--service", "no.such.Service"
        )
        assert unknown.returncode == 2
        assert _one_mesh_line(unknown.stderr).startswith("mesh: NOT_FOUND")
        probe_without_certificate = await asyncio.to_thread(
            run_mesh, "health", "--target", address, "--timeout", "2"
        )
        assert probe_without_certificate.returncode == 1
        assert _one_mesh_line(probe_without_certificate.stderr).startswith("mesh: UNAVAILABLE")


def test_a_node_off_loopback_in_plaintext_or_with_a_missing_certificate_is_one_line(
    tmp_path: Path,
) -> None:
    exposed = run_mesh("node", "--engine", "fake", "--listen", "0.0.0.0:0")
    assert exposed.returncode == 2
    line = _one_mesh_line(exposed.stderr)
    assert line.startswith("mesh: FAILED_PRECONDITION (PLAINTEXT_OFF_LOOPBACK): node ")
    assert "would listen on 0.0.0.0:0" in line and "--insecure" in line

    missing = tmp_path / "missing.pem"
    broken = run_mesh(
        "node", "--engine", "fake", "--listen", "127.0.0.1:0", "--metrics-listen", "off",
        "--tls-cert", str(missing), "--tls-key", str(missing),
    )  # fmt: skip
    assert broken.returncode == 2
    assert f"cannot read certificate {missing}" in _one_mesh_line(broken.stderr)
    half = run_mesh("node", "--engine", "fake", "--tls-key", str(missing))
    assert half.returncode == 2 and "tls.cert_file" in _one_mesh_line(half.stderr)


def test_mesh_up_off_loopback_in_plaintext_is_refused_before_any_engine_loads(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("router: {listen: '127.0.0.1:0'}\nnodes: [{id: n1, engine: fake}]\n")
    env = {k: v for k, v in os.environ.items() if k != "MESH_REGISTRY_TOKEN"}
    out = run_mesh("up", "--config", str(config), "--listen", "0.0.0.0:0", env=env)
    assert out.returncode == 2
    line = _one_mesh_line(out.stderr)
    assert line.startswith("mesh: FAILED_PRECONDITION (PLAINTEXT_OFF_LOOPBACK): the router ")
    assert "router.insecure: true" in line and "node n1 serving" not in out.stderr
