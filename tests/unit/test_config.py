from __future__ import annotations

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
