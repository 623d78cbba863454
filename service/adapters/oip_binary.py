"""The Open Inference Protocol's binary-data extension: BYTES elements as 4-byte little-endian lengths and
their bytes, every length checked against the buffer; FP32 and BOOL outputs as raw little-endian arrays."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from service.adapters.oip_schema import INPUT
from service.validation import InvalidInput


def binary_strings(binary: bytes, size: int, count: int) -> list[str]:
    """BYTES elements of the binary-data extension: each a 4-byte little-endian length, then the bytes; at
    most ``count`` of them, every length checked against the buffer."""
    field = "inputs[0].parameters.binary_data_size"
    if size != len(binary):
        raise InvalidInput(field, f"{size} bytes declared but {len(binary)} follow the header")
    out: list[str] = []
    position = 0
    while position < size:
        if len(out) == count:
            raise InvalidInput(INPUT, f"more than the {count} elements its shape declares")
        if position + 4 > size:
            raise InvalidInput(f"{INPUT}[{len(out)}]", f"truncated length prefix at byte {position}")
        (length,) = struct.unpack_from("<I", binary, position)
        if position + 4 + length > size:
            raise InvalidInput(f"{INPUT}[{len(out)}]", f"length {length:,} overruns the {size:,} binary bytes")
        chunk = binary[position + 4 : position + 4 + length]
        position += 4 + length
        try:
            out.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"{INPUT}[{len(out)}]", "is not UTF-8") from None
    return out


def encode_binary(datatype: str, values: Any) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode("utf-8") for v in values))
    if datatype == "BOOL":
        return bytes(np.ascontiguousarray(values, dtype=np.bool_).tobytes())
    return bytes(np.ascontiguousarray(values, dtype="<f4").tobytes())
