"""`mesh router` / `mesh up` with `router.registry.mode: open` off loopback: one line, exit 2.

Open registration lets anything that reaches the router attract every tenant's prompts, so it
is refused before anything binds or loads: at config load for `router.listen`, at start for a
`--listen` flag.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MESH = [sys.executable, "-m", "mesh"]
OPEN_CONFIG = """
router:
  listen: {listen}
  guards: {{enabled: false}}
  cache: {{enabled: false}}
  ledger: {{enabled: false}}
  routing: {{estimator: {{embeddings: false}}}}
  registry: {{mode: open}}
nodes: []
telemetry: {{prometheus_listen: null}}
"""


def _mesh(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESH_LOG_FORMAT": "text"}
    env.pop("MESH_REGISTRY_TOKEN", None)
    return subprocess.run(
        [*MESH, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def _one_mesh_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "ready" not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("mesh: ")]
    return line


@pytest.mark.parametrize("command", ["router", "up"])
def test_open_registration_in_config_off_loopback_is_one_config_line(
    command: str, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(OPEN_CONFIG.format(listen="0.0.0.0:50999"))
    line = _one_mesh_line(_mesh(command, "--config", str(config)))
    assert "router: Value error, router.registry.mode open" in line
    assert "loopback listen address only" in line


@pytest.mark.parametrize("command", ["router", "up"])
def test_open_registration_with_an_exposed_listen_flag_is_refused_before_binding(
    command: str, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(OPEN_CONFIG.format(listen="127.0.0.1:0"))
    line = _one_mesh_line(_mesh(command, "--config", str(config), "--listen", "0.0.0.0:0"))
    assert line.startswith("mesh: FAILED_PRECONDITION (OPEN_REGISTRATION_OFF_LOOPBACK): ")
    assert "listen=0.0.0.0:0" in line
