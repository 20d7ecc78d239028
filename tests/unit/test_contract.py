"""The generated code matches the .proto files, and the error mapper builds rich statuses."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from mesh.contract.errors import FieldViolation, InvalidRequest, UpstreamUnavailable
from mesh.contract.status import to_status
from mesh.tools.genproto import GENERATED_SUFFIXES, generate
from mesh.v1 import inference_pb2

PACKAGE = Path(__file__).resolve().parents[2] / "mesh" / "v1"


def test_committed_generated_code_matches_make_proto(tmp_path: Path) -> None:
    fresh = {p.name: p.read_bytes() for p in generate(tmp_path)}
    committed = {
        p.name: p.read_bytes() for p in PACKAGE.iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    }
    assert sorted(fresh) == sorted(committed), "run `make proto` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code (run `make proto`): {stale}"


def test_stream_and_unary_requests_share_a_wire_format() -> None:
    unary = inference_pb2.GenerateRequest(request_id="r1")
    unary.messages.add(role=2, content="hi")
    unary.sampling.max_tokens = 5
    unary.routing.model = "m"
    stream = inference_pb2.GenerateStreamRequest.FromString(unary.SerializeToString())
    assert stream.SerializeToString() == unary.SerializeToString()
    assert stream.messages[0].content == "hi" and stream.routing.model == "m"


def _details(status: grpc.Status) -> status_pb2.Status:
    ((_key, value),) = [
        (k, v) for k, v in status.trailing_metadata if k == "grpc-status-details-bin"
    ]
    return status_pb2.Status.FromString(value)


def test_invalid_request_maps_to_bad_request_details() -> None:
    err = InvalidRequest(
        "bad", violations=[FieldViolation("sampling.top_p", "must be within (0, 1]")]
    )
    status = to_status(err)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    proto = _details(status)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert proto.details[0].Unpack(info) and info.reason == "INVALID_REQUEST"
    assert proto.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "sampling.top_p"


def test_retry_info_is_attached_when_known() -> None:
    status = to_status(UpstreamUnavailable("down", metadata={"node": "n1"}, retry_after_s=1.5))
    assert status.code == grpc.StatusCode.UNAVAILABLE
    proto = _details(status)
    retry = error_details_pb2.RetryInfo()
    assert proto.details[1].Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000
