"""KPL aggregated records: many user records of one partition key in one Kinesis record, and back.

The producer aggregates a key's pending records so a hot key is not limited to one record per round trip;
the consumer splits them again.

Format: 4 magic bytes, a protobuf `AggregatedRecord` (partition_key_table = 1, explicit_hash_key_table = 2,
records = 3, each Record with partition_key_index = 1, explicit_hash_key_index = 2, data = 3, tags = 4), and
the 16-byte MD5 of the protobuf part. A record without the magic, or whose MD5 does not match, is a plain
record and passes through unchanged (that is what the KCL does). Only the few protobuf wire types this
message uses are decoded, so no protobuf runtime is needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST = 16


@dataclass(frozen=True)
class UserRecord:
    data: bytes
    partition_key: str
    sub_sequence: int  # position within the aggregated record; 0 for plain records


class AggregationError(ValueError):
    """An aggregated record whose checksum matched but whose content cannot be decoded."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise AggregationError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise AggregationError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: varints as ints, length-delimited fields as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise AggregationError("truncated field")
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise AggregationError(f"unsupported wire type {wire}")
    return out


def is_aggregated(data: bytes) -> bool:
    return (
        len(data) > len(MAGIC) + _DIGEST
        and data.startswith(MAGIC)
        and hashlib.md5(data[4:-_DIGEST]).digest() == data[-_DIGEST:]  # noqa: S324 - KPL's format
    )


def deaggregate(data: bytes, partition_key: str) -> list[UserRecord]:
    if not is_aggregated(data):
        return [UserRecord(data, partition_key, 0)]
    keys: list[str] = []
    records: list[tuple[int, bytes]] = []
    for number, value in _fields(data[4:-_DIGEST]):
        if number == 1 and isinstance(value, bytes):
            try:
                keys.append(value.decode())
            except UnicodeDecodeError:
                raise AggregationError("a partition key is not UTF-8") from None
        elif number == 3 and isinstance(value, bytes):
            key_index, payload = 0, b""
            for inner_number, inner in _fields(value):
                if inner_number == 1 and isinstance(inner, int):
                    key_index = inner
                elif inner_number == 3 and isinstance(inner, bytes):
                    payload = inner
            records.append((key_index, payload))
    try:
        return [UserRecord(payload, keys[index], sub) for sub, (index, payload) in enumerate(records)]
    except IndexError:
        raise AggregationError("partition key index out of range") from None


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


# Bytes an aggregated record adds around its user records: magic and digest, plus per record at most a tag,
# a 5-byte length, the key index field and the data field's own tag and length.
OVERHEAD_BYTES = len(MAGIC) + _DIGEST
PER_RECORD_OVERHEAD_BYTES = 16


def aggregate(records: list[tuple[str, bytes]]) -> bytes:
    """One KPL aggregated record carrying `records` (partition key, data) in order."""
    keys = list(dict.fromkeys(key for key, _ in records))
    index = {key: i for i, key in enumerate(keys)}
    parts = [_field(1, key.encode()) for key in keys]
    parts.extend(_field(3, b"\x08" + _varint_bytes(index[key]) + _field(3, data)) for key, data in records)
    body = b"".join(parts)
    return MAGIC + body + hashlib.md5(body).digest()  # noqa: S324 - KPL's format
