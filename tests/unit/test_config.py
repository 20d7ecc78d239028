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
