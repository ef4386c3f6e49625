"""KPL de-aggregation: round trips, plain records, and corrupt aggregates."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudflow.kpl import MAGIC, AggregationError, aggregate, deaggregate, is_aggregated

keys = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Co")),
    min_size=1,
    max_size=20,
)
records = st.lists(st.tuples(keys, st.binary(max_size=300)), min_size=1, max_size=30)


@given(records)
def test_round_trip(items: list[tuple[str, bytes]]) -> None:
    blob = aggregate(items)
    assert is_aggregated(blob)
    out = deaggregate(blob, "outer-key")
    assert [(r.partition_key, r.data) for r in out] == items
    assert [r.sub_sequence for r in out] == list(range(len(items)))


@given(st.binary(max_size=200))
def test_plain_records_pass_through(data: bytes) -> None:
    (record,) = deaggregate(data, "k")
    assert (record.data, record.partition_key, record.sub_sequence) == (data, "k", 0)


def test_a_bad_checksum_means_a_plain_record() -> None:
    blob = bytearray(aggregate([("a", b"x"), ("b", b"y")]))
    blob[-1] ^= 0xFF
    (record,) = deaggregate(bytes(blob), "k")
    assert record.data == bytes(blob)


def test_a_corrupt_aggregate_with_a_valid_checksum_is_an_error() -> None:
    body = b"\x1a\x05\x08\x07\x1a\x01x"  # one record pointing at partition key 7, with no key table
    with pytest.raises(AggregationError, match="partition key index"):
        deaggregate(MAGIC + body + hashlib.md5(body).digest(), "k")  # noqa: S324
    truncated = b"\x1a\x09\x08"
    with pytest.raises(AggregationError, match="truncated"):
        deaggregate(MAGIC + truncated + hashlib.md5(truncated).digest(), "k")  # noqa: S324
