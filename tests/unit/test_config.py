from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.config import ConfigError, Tier, default_config, is_loopback, load_config, parse_config


def test_empty_document_gives_loopback_defaults() -> None:
    config = parse_config("")
    assert config.router.listen == "127.0.0.1:50051"
    assert config.nodes == []


def test_full_document_parses() -> None:
    config = parse_config(
        """
router:
  listen: 127.0.0.1:6000
  upstreams:
    - {id: a, address: "node-a.mesh.svc.cluster.local:50061"}
nodes:
  - id: n1
    engine: fake
    tier: frontier
    input_price_per_mtok: 3
    vllm: {dtype: float32, max_model_len: 1024}
"""
    )
    assert config.router.upstreams[0].address.endswith(":50061")
    assert config.nodes[0].tier is Tier.FRONTIER
    assert config.nodes[0].vllm.max_model_len == 1024


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("router:\n  listen: 127.0.0.1:1\n  upstrems: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:3" in message
    assert "router.upstrems: unknown key" in message


def test_bad_values_are_all_reported_with_their_lines() -> None:
    text = "nodes:\n  - id: n1\n    engine: gpt\n    max_inflight: 0\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "m.yaml")
    message = str(info.value)
    assert "m.yaml:3: nodes[0].engine" in message
    assert "m.yaml:4: nodes[0].max_inflight" in message


@pytest.mark.parametrize("address", ["nohost", ":50051", "host:port", "host:70000"])
def test_bad_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ConfigError, match=r"router\.listen"):
        parse_config(f"router: {{listen: '{address}'}}")


def test_duplicate_node_ids_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_config("router: {upstreams: [{id: a, address: 'h:1'}]}\nnodes: [{id: a}]\n")


def test_invalid_yaml_and_wrong_top_level() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("router: [unclosed", "x.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        parse_config("- a\n- b\n")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_default_config_has_one_loopback_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_ENGINE", "fake")
    config = default_config()
    assert [n.engine for n in config.nodes] == ["fake"]
    assert is_loopback(config.router.listen)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("0.0.0.0:1", False),
        ("10.0.0.1:1", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_node_registration_fields_default_to_no_router() -> None:
    node = parse_config("nodes: [{id: n1}]").nodes[0]
    assert node.router_address is None and node.advertise_address is None
    assert node.heartbeat_interval_s == 2.0


def test_node_registration_fields_parse() -> None:
    node = parse_config(
        """
nodes:
  - id: n1
    listen: 0.0.0.0:50061
    router_address: router.mesh.svc.cluster.local:50051
    advertise_address: "[fd00::5]:50061"
    heartbeat_interval_s: 0.5
"""
    ).nodes[0]
    assert node.router_address == "router.mesh.svc.cluster.local:50051"
    assert node.advertise_address == "[fd00::5]:50061" and node.heartbeat_interval_s == 0.5


@pytest.mark.parametrize("field", ["router_address", "advertise_address"])
@pytest.mark.parametrize(
    "address", ["nohost", "host:port", "h:70000", "0.0.0.0:1", "[::]:1", "h:0"]
)
def test_node_dial_addresses_are_validated(field: str, address: str) -> None:
    # A router or a node must be able to dial it: no wildcard host, no port 0.
    with pytest.raises(ConfigError, match=rf"nodes\[0\]\.{field}"):
        parse_config(f"nodes: [{{id: n1, {field}: '{address}'}}]")


def test_wildcard_listen_with_a_router_needs_an_advertise_address() -> None:
    text = "nodes: [{id: n1, listen: '0.0.0.0:50061', router_address: 'r:50051'}]"
    with pytest.raises(ConfigError, match="advertise_address is required"):
        parse_config(text, "m.yaml")
    # Without a router nobody dials the advertised address: a wildcard listen is fine.
    assert parse_config("nodes: [{id: n1, listen: '0.0.0.0:50061'}]").nodes[0].listen


@pytest.mark.parametrize("interval", [0, -1])
def test_heartbeat_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.heartbeat_interval_s"):
        parse_config(f"nodes: [{{id: n1, heartbeat_interval_s: {interval}}}]")


# --- bridges: external APIs that `mesh up` starts beside the nodes -------------------------

BRIDGES_YAML = """\
router:
  upstreams: [{id: remote, address: "node-a:50061"}]
nodes:
  - id: local
    engine: fake
bridges:
  - id: gpt
    provider: openai
    model: gpt-4o-mini
    api_key_env: TEAM_OPENAI_KEY
    limits: {max_concurrent: 4, requests_per_minute: 60}
  - id: claude
    provider: anthropic
    model: claude-haiku-4-5
    api_key_file: /run/secrets/anthropic
    tier: large
  - id: in-house
    provider: openai-compatible
    model: my-llama
    base_url: http://127.0.0.1:8000/v1/
    price: {input: 0.1, output: 0.2}
    aliases: [llama]
"""


def test_bridges_parse_into_bridge_configs() -> None:
    from mesh.config import BridgeConfig

    config = parse_config(BRIDGES_YAML)
    gpt, claude, in_house = config.bridges
    assert all(isinstance(b, BridgeConfig) for b in config.bridges)
    assert (gpt.provider, gpt.key_source) == ("openai", "env TEAM_OPENAI_KEY")
    assert gpt.limits.max_concurrent == 4 and gpt.limits.requests_per_minute == 60
    assert claude.key_source == "file /run/secrets/anthropic" and claude.tier is Tier.LARGE
    assert in_house.resolved_base_url == "http://127.0.0.1:8000/v1"
    assert in_house.price is not None and in_house.price.output == 0.2
    assert parse_config("").bridges == []


def test_bridge_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(BRIDGES_YAML.replace("    tier: large\n", "    teir: large\n"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:16: bridges[1].teir: unknown key" in str(info.value)


def test_a_key_value_in_mesh_yaml_is_refused_and_never_echoed() -> None:
    key = "sk-pasted-into-config-4b9e"
    text = f"bridges:\n  - id: b\n    provider: openai\n    model: m\n    api_key: {key}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "m.yaml")
    assert "m.yaml:5: bridges[0].api_key: unknown key" in str(info.value)
    assert key not in str(info.value)


def test_bridge_with_both_key_sources_is_rejected_at_its_line() -> None:
    text = BRIDGES_YAML.replace(
        "    api_key_env: TEAM_OPENAI_KEY\n",
        "    api_key_env: TEAM_OPENAI_KEY\n    api_key_file: /k\n",
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "m.yaml")
    assert "m.yaml:7: bridges[0]: Value error, set api_key_env or api_key_file, not both" in str(
        info.value
    )


@pytest.mark.parametrize("taken", ["local", "remote", "claude"])
def test_bridge_ids_are_unique_across_nodes_bridges_and_upstreams(taken: str) -> None:
    with pytest.raises(ConfigError, match=rf"unique across nodes, bridges and upstreams: {taken}"):
        parse_config(BRIDGES_YAML.replace("id: gpt", f"id: {taken}"))


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("    listen: nohost", "bridges[0].listen"),
        ("    router_address: 0.0.0.0:50051", "bridges[0].router_address"),
        ("    provider: cohere", "bridges[0].provider"),
        ("    default_max_tokens: 0", "bridges[0].default_max_tokens"),
    ],
)
def test_bad_bridge_values_name_their_key(line: str, path: str) -> None:
    text = BRIDGES_YAML.replace("    model: gpt-4o-mini\n", f"    model: gpt-4o-mini\n{line}\n")
    if "provider:" in line:
        text = text.replace("    provider: openai\n", "", 1)
    with pytest.raises(ConfigError, match=re.escape("m.yaml:") + r"\d+: " + re.escape(path)):
        parse_config(text, "m.yaml")


def test_bridges_validate_whichever_module_is_imported_first() -> None:
    # A fresh interpreter starting from the bridge side must still validate `bridges:`.
    code = (
        "import nodes.bridges.runtime\n"
        "from mesh.config import parse_config\n"
        "print(type(parse_config('bridges: [{id: b, provider: openai, model: m}]')"
        ".bridges[0]).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "BridgeConfig"


def test_tier_is_one_definition_for_config_and_wire() -> None:
    from mesh.config import tier_name
    from mesh.v1 import types_pb2

    wire = [v for v in types_pb2.ModelTier.values() if v != types_pb2.MODEL_TIER_UNSPECIFIED]
    # Every wire tier has exactly one config tier, in the same order (cheapest first).
    assert [Tier.from_proto(v) for v in wire] == list(Tier)
    assert Tier.ordered_protos() == tuple(wire)
    assert all(Tier.from_proto(t.proto) is t for t in Tier)
    assert tier_name(types_pb2.MODEL_TIER_LARGE) == "large"
    assert tier_name(types_pb2.MODEL_TIER_UNSPECIFIED) == "unspecified"
    with pytest.raises(ValueError, match="not a model tier"):
        Tier.from_proto(types_pb2.MODEL_TIER_UNSPECIFIED)
    assert Tier.named("frontier") is Tier.FRONTIER
    assert Tier.named("huge") is None and Tier.named(None) is None


def test_every_sqlite_file_lives_in_one_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mesh.config import GuardSettings, RouterConfig, TelemetrySettings, data_dir

    monkeypatch.delenv("MESH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "inference-mesh"
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "data"
    assert TelemetrySettings().resolved_span_store_path() == root / "traces.db"
    assert RouterConfig().ledger_url().endswith(str(root / "ledger.db"))
    assert GuardSettings().resolved_audit_url().endswith(str(root / "guard_audit.db"))


def test_sqlite_stores_create_their_folder(tmp_path: Path) -> None:
    from mesh.config import ensure_sqlite_dir

    target = tmp_path / "fresh" / "data" / "ledger.db"
    ensure_sqlite_dir(f"sqlite+aiosqlite:///{target}")
    assert target.parent.is_dir()
    ensure_sqlite_dir("sqlite+aiosqlite:///:memory:")  # nothing to create
    ensure_sqlite_dir("postgresql+asyncpg://u@h/db")  # not a file
