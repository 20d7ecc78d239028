"""What a registering node may claim: each rule of mesh.router.registry_validation, one by one."""

from __future__ import annotations

import math

import pytest

from mesh.contract.errors import InvalidRequest
from mesh.router.registry_validation import (
    MAX_VIOLATIONS,
    validate_deregister,
    validate_heartbeat,
    validate_register,
)
from mesh.v1 import registry_pb2
from mesh.v1 import types_pb2 as t


def card(**fields: object) -> t.ModelCard:
    values: dict[str, object] = {
        "model_id": "smollm2-135m-instruct",
        "provider": "self-hosted",
        "kind": t.MODEL_KIND_SELF_HOSTED,
        "tier": t.MODEL_TIER_SMALL,
        "context_window": 8192,
        "input_price_per_mtok": 0.02,
        "output_price_per_mtok": 0.04,
        "capabilities": ["chat"],
        "aliases": ["smollm2"],
    }
    values.update(fields)
    return t.ModelCard(**values)  # type: ignore[arg-type]


def registration(**fields: object) -> registry_pb2.RegisterRequest:
    values: dict[str, object] = {
        "node_id": "gpu-a",
        "address": "10.0.0.7:50061",
        "models": [card()],
    }
    values.update(fields)
    return registry_pb2.RegisterRequest(**values)  # type: ignore[arg-type]


def problems(request: registry_pb2.RegisterRequest, max_models: int = 16) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as info:
        validate_register(request, max_models)
    assert info.value.reason == "INVALID_REQUEST"
    return {v.field: v.description for v in info.value.violations}


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.7:50061",
        "localhost:1",
        "smollm2-a.mesh.svc.cluster.local:50061",
        "[fd00::5]:50061",
        "[::1]:65535",
    ],
)
def test_real_registrations_pass(address: str) -> None:
    validate_register(registration(address=address), max_models=16)
    bridge = card(
        model_id="meta-llama/Llama-3.1-8B-Instruct",
        provider="openai-compatible",
        kind=t.MODEL_KIND_EXTERNAL,
        tier=t.MODEL_TIER_LARGE,
        context_window=0,  # unknown
        aliases=["via-openai-compatible", "llama3:8b"],
    )
    validate_register(registration(models=[bridge, card()]), max_models=2)


@pytest.mark.parametrize(
    ("node_id", "rule"),
    [("", "must not be empty"), ("x" * 129, "at most 128"), ("-x", "letters"), ("a b", "letters")],
)
def test_node_id_syntax_and_length(node_id: str, rule: str) -> None:
    assert rule in problems(registration(node_id=node_id))["node_id"]


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("nohost", "host:port"),
        ("h:0", "1..65535"),
        ("h:65536", "1..65535"),
        ("h:http", "host:port"),
        (":50061", "host:port"),
        ("0.0.0.0:50061", "wildcard"),
        ("[::]:50061", "wildcard"),
        ("::1:50061", "bracketed IPv6"),
        ("evil host:1", "hostname"),
        ("h" * 300 + ":1", "at most 256"),
    ],
)
def test_address_is_a_dialable_host_and_port(address: str, rule: str) -> None:
    assert rule in problems(registration(address=address))["address"]


def test_card_count_is_bounded_and_checked_before_any_card() -> None:
    # 20,000 cards, every one of them also invalid: one violation, about the count only.
    flood = registration(models=[card(tier=99, input_price_per_mtok=-1)] * 20_000)
    assert problems(flood) == {"models": "at most 16 model cards per node"}
    assert problems(registration(models=[card()] * 3), max_models=2) == {
        "models": "at most 2 model cards per node"
    }
    assert problems(registration(models=[])) == {"models": "at least one model card is required"}


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"model_id": ""}, "model_id", "must not be empty"),
        ({"model_id": "m" * 129}, "model_id", "at most 128"),
        ({"model_id": "gpt 4"}, "model_id", "letters"),
        ({"provider": "o" * 200}, "provider", "at most 128"),
        ({"tier": t.MODEL_TIER_UNSPECIFIED}, "tier", "MODEL_TIER_SMALL"),
        ({"tier": 99}, "tier", "MODEL_TIER_SMALL"),
        ({"kind": 7}, "kind", "known ModelKind"),
        ({"input_price_per_mtok": -0.01}, "input_price_per_mtok", "finite"),
        ({"output_price_per_mtok": math.nan}, "output_price_per_mtok", "finite"),
        ({"cached_input_price_per_mtok": math.inf}, "cached_input_price_per_mtok", "finite"),
        ({"input_price_per_mtok": 2e6}, "input_price_per_mtok", "within [0, 1e+06]"),
        ({"context_window": 8}, "context_window", "0 (unknown)"),
        ({"context_window": -1}, "context_window", "0 (unknown)"),
        ({"context_window": 2**31 - 1}, "context_window", "0 (unknown)"),
        ({"aliases": [f"a{i}" for i in range(17)]}, "aliases", "at most 16 entries"),
        ({"aliases": ["ok", "x" * 10_000]}, "aliases[1]", "at most 128"),
        ({"capabilities": ["chat"] * 17}, "capabilities", "at most 16 entries"),
        ({"capabilities": [""]}, "capabilities[0]", "must not be empty"),
    ],
)
def test_each_card_rule(fields: dict[str, object], field: str, rule: str) -> None:
    found = problems(registration(models=[card(model_id="first"), card(**fields)]))
    assert rule in found[f"models[1].{field}"], found
    assert not any(f.startswith("models[0]") for f in found)


def test_a_model_listed_twice_is_refused() -> None:
    found = problems(registration(models=[card(), card()]))
    assert found == {"models[1].model_id": "the same model id is listed twice"}


@pytest.mark.parametrize(
    ("load", "field"),
    [
        (t.NodeLoad(running=-1), "load.running"),
        (t.NodeLoad(waiting=-5), "load.waiting"),
        (t.NodeLoad(max_inflight=2_000_000), "load.max_inflight"),
        (t.NodeLoad(kv_cache_usage=1.5), "load.kv_cache_usage"),
        (t.NodeLoad(kv_cache_usage=math.nan), "load.kv_cache_usage"),
        (t.NodeLoad(ewma_ttft_ms=-1), "load.ewma_ttft_ms"),
        (t.NodeLoad(ewma_ttft_ms=math.nan), "load.ewma_ttft_ms"),
    ],
)
def test_load_reports_are_bounded_in_register_and_heartbeat(load: t.NodeLoad, field: str) -> None:
    # A negative queue or a NaN time to first token would win least_load / latency routing.
    assert field in problems(registration(load=load))
    with pytest.raises(InvalidRequest) as info:
        validate_heartbeat(registry_pb2.HeartbeatRequest(node_id="gpu-a", load=load))
    assert [v.field for v in info.value.violations] == [field]


def test_heartbeat_and_deregister_check_the_node_id() -> None:
    validate_heartbeat(registry_pb2.HeartbeatRequest(node_id="gpu-a", load=t.NodeLoad(running=2)))
    validate_deregister(registry_pb2.DeregisterRequest(node_id="gpu-a"))
    for bad in ("", "../etc", "x" * 500):
        with pytest.raises(InvalidRequest):
            validate_heartbeat(registry_pb2.HeartbeatRequest(node_id=bad))
        with pytest.raises(InvalidRequest):
            validate_deregister(registry_pb2.DeregisterRequest(node_id=bad))


def test_violations_are_capped_and_never_echo_values() -> None:
    huge = "secret-" + "y" * 50_000
    cards = [card(model_id=f"{huge}{i}", aliases=[huge], tier=0) for i in range(16)]
    with pytest.raises(InvalidRequest) as info:
        validate_register(registration(node_id=huge, address=huge, models=cards), 16)
    err = info.value
    assert len(err.violations) == MAX_VIOLATIONS and "more not listed" in err.message
    shown = err.message + "".join(v.field + v.description for v in err.violations)
    assert "secret-" not in shown and len(shown) < 4000
