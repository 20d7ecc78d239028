"""What every HTTP call carries before the shared edge (`mesh.router.edge.begin`) sees it.

The API key (`Authorization: Bearer` or `x-api-key`, read by the same function as gRPC
metadata), a body read no further than `max_body_bytes`, and the caller's deadline
(`x-mesh-timeout-s`, the HTTP stand-in for a gRPC deadline).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request

from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.router.auth import ApiKeyAuth, Principal, api_key_from_metadata
from mesh.router.http.errors import RequestTooLarge, UnsupportedContentEncoding

TIMEOUT_HEADER = "x-mesh-timeout-s"
REQUEST_ID_HEADER = "x-request-id"
# Content-Encoding -> zlib's wbits for it (None: the body is as sent). Clients that compress
# request bodies (some SDK transports and gateways do) got "not valid JSON" before.
_ENCODINGS: dict[str, int | None] = {
    "": None,
    "identity": None,
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


def authenticate(auth: ApiKeyAuth, headers: Headers) -> Principal:
    """The caller, exactly as a gRPC call with the same key (Unauthenticated if unknown)."""
    if not auth.enabled:
        return auth.authenticate(None)
    return auth.authenticate(api_key_from_metadata(headers.items()))


def time_remaining(headers: Headers) -> float | None:
    """Seconds the caller gives the request, or None for the router's default."""
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequest(
            f"{TIMEOUT_HEADER} must be a positive number of seconds",
            violations=[FieldViolation(TIMEOUT_HEADER, "a positive number of seconds")],
        )
    return value


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is over this router's limit of {limit} bytes",
        metadata={"limit_bytes": str(limit)},
    )


async def read_json(request: Request, limit: int) -> Any:
    """The parsed body; RequestTooLarge past `limit` bytes (read no further), InvalidRequest
    for anything that is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = _decoded(b"".join(chunks), request.headers.get("content-encoding", ""), limit)
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise InvalidRequest(
            f"the body is not valid JSON: {exc}",
            violations=[FieldViolation("body", "must be a JSON object")],
        ) from None
    except RecursionError:  # "[[[[…" 100,000 deep fits in 200 KB; it was a 500
        raise InvalidRequest(
            "the body is nested too deeply to be a chat request",
            violations=[FieldViolation("body", "must be a JSON object of plain depth")],
        ) from None
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(body):
        # JSON may spell a lone UTF-16 surrogate ("\ud800"); Python keeps it in a str that no
        # UTF-8 field (protobuf, the ledger, a provider) can take: it was a 500 further on.
        raise InvalidRequest(
            "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair)",
            violations=[FieldViolation("body", "strings must be valid Unicode")],
        )
    return body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body as JSON bytes: a compressed one inflated to at most `limit` bytes (a 1 KB
    gzip bomb that inflates to gigabytes stops at the limit, RequestTooLarge), an unknown
    coding refused (415) rather than parsed as JSON."""
    coding = encoding.strip().lower()
    if coding not in _ENCODINGS:
        raise UnsupportedContentEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate or identity)",
            violations=[FieldViolation("content-encoding", "gzip, deflate or identity")],
        )
    wbits = _ENCODINGS[coding]
    if wbits is None:
        return raw
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise InvalidRequest(
            f"the body is not valid {coding} data",
            violations=[FieldViolation("body", f"must be {coding}-compressed JSON")],
        ) from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return body


def _encodable(value: Any) -> bool:
    """Whether every string in a parsed JSON value (keys too) is valid Unicode; iterative, as
    the value may be as deep as the parser allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
