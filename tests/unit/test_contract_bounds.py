"""Bounded texts in statuses, and the throttle behind the undecodable-request log line."""

from __future__ import annotations

from google.rpc import error_details_pb2, status_pb2

from mesh.contract.errors import FieldViolation, InvalidRequest, MeshError, ModelNotFound, echo
from mesh.contract.status import MAX_MESSAGE_BYTES, clip_utf8, to_status
from mesh.contract.undecodable import Throttle


def _status(error: MeshError) -> status_pb2.Status:
    status = to_status(error)
    [value] = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(value)


def test_echo_keeps_short_input_and_marks_the_cut_of_long_input() -> None:
    assert echo("gpt-4o-mini") == "gpt-4o-mini"
    cut = echo("m" * 10_000)
    assert cut.startswith("m" * 128) and cut.endswith("…[9872 more chars]")
    assert echo("abcdef", limit=3) == "abc…[3 more chars]"


def test_clip_utf8_never_splits_a_character() -> None:
    assert clip_utf8("héllo", 100) == "héllo"
    clipped = clip_utf8("€" * 100, 20)  # 3 bytes each
    assert len(clipped.encode()) <= 20 and clipped.endswith("…") and set(clipped[:-1]) == {"€"}


def test_ordinary_errors_pass_through_unchanged() -> None:
    error = ModelNotFound("no node serves model 'x'", metadata={"model": "x"})
    proto = _status(error)
    assert proto.message == error.message
    info = error_details_pb2.ErrorInfo()
    proto.details[0].Unpack(info)
    assert dict(info.metadata) == {"model": "x"} and info.reason == "MODEL_NOT_FOUND"


def test_every_text_of_a_huge_error_is_bounded() -> None:
    error = InvalidRequest(
        "invalid request: " + "x" * 100_000,
        metadata={f"k{i}": "v" * 10_000 for i in range(50)},
        violations=[
            FieldViolation(f"messages[{i}].content", "must not be empty") for i in range(1024)
        ],
    )
    status = to_status(error)
    assert len(status.details.encode()) <= MAX_MESSAGE_BYTES
    proto = _status(error)
    # What travels in the trailers: the message twice (grpc-message, details) and the details
    # in base64, all well under a client's 8 KiB soft limit.
    assert len(proto.SerializeToString()) * 4 / 3 + len(status.details.encode()) * 3 < 8 * 1024
    bad = error_details_pb2.BadRequest()
    proto.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "messages[0].content"
    assert bad.field_violations[-1].description.endswith("more not shown")


def test_throttle_lets_one_report_through_per_interval_with_the_count_held_back() -> None:
    now = [0.0]
    throttle = Throttle(interval_s=60, clock=lambda: now[0])
    assert throttle.due() == 0
    assert [throttle.due() for _ in range(5)] == [None] * 5
    now[0] = 59.9
    assert throttle.due() is None
    now[0] = 60.0
    assert throttle.due() == 6
    assert throttle.due() is None
