"""Hostile request bytes for the fuzz scenario, written at the wire level.

Random bytes and mutated valid requests come from hypothesis strategies; the structural cases
are built from each request type's descriptor so that every string field, at any depth, gets
bytes that are not UTF-8, and every scalar its extreme values. Oversized fields go past the
router's prompt bound (1 MiB) and past the gRPC message limit (5 MiB); nested groups go past
protobuf's recursion limit. Nothing here knows a handler: only the wire format.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from hypothesis import strategies as st

LENGTH_DELIMITED, VARINT, FIXED64, START_GROUP, END_GROUP, FIXED32 = 2, 0, 1, 3, 4, 5
NOT_UTF8 = (b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b"ok\x80", b"\xf4\x90\x80\x80")
UNKNOWN_FIELD = 1000  # no request message uses it
MAX_DEPTH = 3


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negatives as protobuf writes them: ten bytes of two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    return tag(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def nest(path: Sequence[int], payload: bytes) -> bytes:
    """`payload` (a field's encoding) inside the message fields of `path`, outermost first."""
    for number in reversed(path):
        payload = delimited(number, payload)
    return payload


def decodes(request_type: type[ProtoMessage], raw: bytes) -> bool:
    try:
        request_type.FromString(raw)
    except DecodeError:
        return False
    return True


def _fields(
    descriptor: Descriptor, path: tuple[int, ...] = (), seen: frozenset[str] = frozenset()
) -> Iterator[tuple[tuple[int, ...], FieldDescriptor]]:
    """Every (message path, field) reachable from `descriptor`, each message type once per path."""
    for field in descriptor.fields:
        yield path, field
        message = field.message_type
        if message is not None and len(path) + 1 < MAX_DEPTH and message.full_name not in seen:
            yield from _fields(message, (*path, field.number), seen | {descriptor.full_name})


@dataclass(frozen=True)
class Case:
    """One structural input: what it is (for the failure message) and its bytes."""

    what: str
    raw: bytes


def _extremes(field: FieldDescriptor) -> list[bytes]:
    """The field set to its extreme values, encoded (a repeated field gets them packed too)."""
    kind = field.type
    number = field.number
    if kind in (FieldDescriptor.TYPE_DOUBLE,):
        values = [float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e308]
        return [tag(number, FIXED64) + struct.pack("<d", v) for v in values]
    if kind in (FieldDescriptor.TYPE_FLOAT,):
        values = [float("nan"), float("inf"), -3.4e38]
        return [tag(number, FIXED32) + struct.pack("<f", v) for v in values]
    if kind in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64):
        return [tag(number, FIXED64) + struct.pack("<Q", v) for v in (0, 2**64 - 1)]
    if kind in (FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32):
        return [tag(number, FIXED32) + struct.pack("<I", v) for v in (0, 2**32 - 1)]
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_ENUM,
        FieldDescriptor.TYPE_BOOL,
    ):
        integers = [2**31 - 1, -1, -(2**31), 2**63 - 1, -(2**63), 2**64 - 1]
        encoded = [tag(number, VARINT) + varint(v) for v in integers]
        if field.is_repeated:
            encoded.append(delimited(number, b"".join(varint(v) for v in integers) * 1000))
        return encoded
    return []


def structural_cases(request_type: type[ProtoMessage], seed: bytes) -> list[Case]:
    """Invalid UTF-8 in every string field, extreme scalars, oversized and deeply nested fields.

    `seed` (a valid request) is prepended where the rest of the request should be sensible.
    """
    descriptor: Descriptor = request_type.DESCRIPTOR  # type: ignore[assignment]
    cases: list[Case] = []
    first_string: tuple[tuple[int, ...], int] | None = None
    for path, field in _fields(descriptor):
        where = ".".join([*(str(n) for n in path), field.name])
        if field.type == FieldDescriptor.TYPE_STRING:
            first_string = first_string or (path, field.number)
            for i, bad in enumerate(NOT_UTF8):
                raw = nest(path, delimited(field.number, bad))
                cases.append(Case(f"not UTF-8 #{i} in {where}", seed + raw))
        for i, raw in enumerate(_extremes(field)):
            cases.append(Case(f"extreme value #{i} of {where}", seed + nest(path, raw)))
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.is_repeated:
            # 100,000 empty elements: small on the wire, large once parsed
            many = delimited(field.number, b"") * 100_000
            cases.append(Case(f"100000 empty {where}", seed + nest(path, many)))
    if first_string is not None:
        path, number = first_string
        for size in (1 << 20, 5 << 20):  # past the prompt bound; past the 4 MiB message limit
            cases.append(
                Case(f"{size >> 20} MiB string", seed + nest(path, delimited(number, b"a" * size)))
            )
    for depth in (64, 101, 10_000):  # protobuf's recursion limit is 100
        group = tag(UNKNOWN_FIELD, START_GROUP) * depth + tag(UNKNOWN_FIELD, END_GROUP) * depth
        cases.append(Case(f"groups nested {depth} deep", seed + group))
    nested = b""
    for _ in range(2_000):  # length-delimited unknown fields inside each other
        nested = delimited(UNKNOWN_FIELD, nested)
    cases.append(Case("unknown fields nested 2000 deep", seed + nested))
    cases.append(Case("a length past the end", seed + tag(1, LENGTH_DELIMITED) + varint(2**31)))
    cases.append(Case("field number 0", b"\x02\x00" + seed))
    return cases


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """A valid request with a few byte-level mutations: flips, inserts, cuts, repeats."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat", "varint"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        elif op == "repeat":
            end = min(len(data), at + draw(st.integers(1, 16)))
            data[at:at] = data[at:end] * draw(st.integers(1, 4))
        else:  # a length or value replaced by an extreme varint
            data[at:at] = varint(draw(st.sampled_from([0, 1, 127, 128, 2**31, 2**63, 2**64 - 1])))
    return bytes(data)


def payloads(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, or a mutated valid request."""
    return st.one_of(st.binary(max_size=512), mutated(seeds))
