from __future__ import annotations

import pytest

from mesh.contract.errors import Code, InvalidRequest
from mesh.contract.validation import validate_generation
from mesh.v1 import inference_pb2, types_pb2
from tests.helpers import request, user


def _fields(req: inference_pb2.GenerateRequest) -> list[str]:
    with pytest.raises(InvalidRequest) as info:
        validate_generation(req)
    assert info.value.code is Code.INVALID_ARGUMENT
    return [v.field for v in info.value.violations]


def test_valid_request_passes() -> None:
    validate_generation(request())


def test_empty_messages() -> None:
    assert _fields(inference_pb2.GenerateRequest()) == ["messages"]


def test_every_problem_is_reported_at_once() -> None:
    req = inference_pb2.GenerateRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content="  ")],
        sampling=types_pb2.SamplingParams(temperature=-1, top_p=0, max_tokens=0, top_k=-2),
    )
    assert set(_fields(req)) == {
        "messages[0].content",
        "sampling.temperature",
        "sampling.top_p",
        "sampling.max_tokens",
        "sampling.top_k",
    }


def test_role_must_be_set_and_a_user_turn_present() -> None:
    req = inference_pb2.GenerateRequest(messages=[types_pb2.ChatMessage(content="hi")])
    assert set(_fields(req)) == {"messages[0].role", "messages"}


def test_unset_sampling_fields_are_not_checked() -> None:
    validate_generation(inference_pb2.GenerateRequest(messages=[user("hi")]))


def test_stop_strings_are_bounded() -> None:
    req = request()
    req.sampling.stop.extend(["x"] * 9)
    assert "sampling.stop" in _fields(req)
    req = request()
    req.sampling.stop.append("")
    assert _fields(req) == ["sampling.stop[0]"]


def test_top_p_of_one_and_temperature_zero_are_valid() -> None:
    req = request()
    req.sampling.top_p = 1.0
    req.sampling.temperature = 0.0
    validate_generation(req)


@pytest.mark.parametrize("cap", [float("nan"), float("inf"), -0.01])
def test_a_cost_cap_that_would_silently_mean_no_cap_is_refused(cap: float) -> None:
    req = request()
    req.routing.max_cost_usd = cap  # every comparison with NaN is false: it was no cap at all
    assert _fields(req) == ["routing.max_cost_usd"]


def test_routing_hints_are_bounded() -> None:
    req = request()
    req.routing.latency_slo.seconds = -1
    req.routing.require_capabilities.extend(["code"] * 33)
    assert _fields(req) == ["routing.latency_slo", "routing.require_capabilities"]
    ok = request()
    ok.routing.max_cost_usd = 0.002
    ok.routing.latency_slo.FromMilliseconds(800)
    ok.routing.require_capabilities.extend(["code", "json-mode"])
    validate_generation(ok)


@pytest.mark.parametrize("request_id", ["a\nb", "nul\x00", "with space", "tab\t", "é-accent"])
def test_a_request_id_that_could_forge_a_log_line_is_refused(request_id: str) -> None:
    req = request()
    req.request_id = request_id
    assert _fields(req) == ["request_id"]


@pytest.mark.parametrize(
    "request_id", ["", "b46d3a8df8bb480d9a48fec0c22bb738", "01HZX3-abc_def:1.2"]
)
def test_ordinary_request_ids_pass(request_id: str) -> None:
    req = request()
    req.request_id = request_id
    validate_generation(req)
