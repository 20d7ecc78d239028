"""Read a 1-D float vector out of an .npz file without importing numpy.

Why not `numpy.load`: the default guard chain's only numpy use was the injection classifier's
weight lookup, and importing numpy costs a router process 11.6 MB of its 113 MB idle RSS
(measured on the lean router, target 90 MB). The .npy format inside the zip is small and
documented (numpy's `format.py`: magic, version, header length, a dict literal, raw data);
this reads the little-endian float16/32/64 vectors the training scripts write and refuses
anything else.
"""

from __future__ import annotations

import array
import ast
import struct
import sys
import zipfile
from pathlib import Path

_MAGIC = b"\x93NUMPY"
_FLOAT_FORMATS = {"<f2": "e", "<f4": "f", "<f8": "d"}
_CHUNK = 4096  # half floats converted per struct call: no 262,144-float tuple at once


class NpzFormatError(ValueError):
    """The member is not a little-endian, C-ordered, 1-D float vector."""


def _header(raw: bytes, name: str) -> tuple[dict[str, object], int]:
    if raw[:6] != _MAGIC or len(raw) < 10:
        raise NpzFormatError(f"{name}: not an .npy member")
    major = raw[6]
    if major == 1:
        (length,) = struct.unpack_from("<H", raw, 8)
        start = 10
    elif major in (2, 3):
        (length,) = struct.unpack_from("<I", raw, 8)
        start = 12
    else:
        raise NpzFormatError(f"{name}: .npy version {major} is not known")
    text = raw[start : start + length].decode("latin-1")
    header = ast.literal_eval(text)  # a dict of literals, as numpy itself reads it
    if not isinstance(header, dict):
        raise NpzFormatError(f"{name}: the .npy header is not a dict")
    return header, start + length


def read_vector(path: Path, name: str) -> array.array[float]:
    """The member `name` of the .npz at `path`: float16 and float32 as an array of C floats
    ('f', 4 bytes a value), float64 as C doubles ('d')."""
    with zipfile.ZipFile(path) as archive:
        raw = archive.read(f"{name}.npy")
    header, offset = _header(raw, name)
    code = _FLOAT_FORMATS.get(str(header.get("descr")))
    shape = header.get("shape")
    if code is None or header.get("fortran_order") or not isinstance(shape, tuple):
        raise NpzFormatError(f"{name}: {header} is not a little-endian float vector")
    if len(shape) != 1 or not isinstance(shape[0], int):
        raise NpzFormatError(f"{name}: shape {shape} is not one-dimensional")
    count = shape[0]
    size = struct.calcsize(code)
    if len(raw) - offset != count * size:
        raise NpzFormatError(f"{name}: {len(raw) - offset} data bytes for {count} values")
    values: array.array[float] = array.array("f" if code == "e" else code)
    if code == "e":  # array has no half type: through struct, a chunk at a time
        for at in range(0, count, _CHUNK):
            n = min(_CHUNK, count - at)
            values.extend(struct.unpack_from(f"<{n}e", raw, offset + at * size))
    else:
        values.frombytes(raw[offset:])
        if sys.byteorder == "big":
            values.byteswap()
    return values
