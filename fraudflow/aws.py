"""AWS helpers: aiobotocore clients built from settings (endpoints, credentials, timeouts), error codes."""

from __future__ import annotations

from binascii import a2b_base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp

from fraudflow.config import Settings
from fraudflow.net import is_loopback

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

# Emulators accept any credentials; botocore still needs some to sign with.
_EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def is_local_endpoint(url: str | None) -> bool:
    return url is not None and is_loopback(urlparse(url).hostname)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def client_config(
    *, read_timeout: float = 10.0, max_attempts: int = 1, pool: int = 32, connect_timeout: float = 2.0
) -> AioConfig:
    # Retries default to one attempt: our callers own backoff, so they can keep per-key order and count faults.
    return AioConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=pool,
    )


def _fast_timestamp(value: Any) -> datetime:
    # Kinesis speaks JSON and sends epoch seconds (ApproximateArrivalTimestamp on every record); botocore's
    # default parser goes through dateutil's local time zone, measured at a tenth of the consumer's CPU.
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return parse_timestamp(value)


def _without_nulls(value: Any) -> Any:
    # botocore leaves out members sent as null (kinesis-local sends "NextShardIterator": null at a shard's end).
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    record = {key: value for key, value in raw.items() if value is not None}
    record["Data"] = a2b_base64(record["Data"])
    if "ApproximateArrivalTimestamp" in record:
        record["ApproximateArrivalTimestamp"] = _fast_timestamp(record["ApproximateArrivalTimestamp"])
    return record


def _parse_get_records(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """Parse a GetRecords answer in one pass, the consumer's hot path: botocore's generic parser walks the
    shape of every record (measured: a fifth of the consumer's CPU). Same result; errors keep botocore's."""
    if response_dict["status_code"] != 200:
        return
    try:
        body = orjson.loads(response_dict["body"])
    except orjson.JSONDecodeError:
        return  # botocore's parser has its own answer for a garbled body
    records = body.pop("Records", None)
    customized_response_dict.update(_without_nulls(body))
    if records is not None:
        customized_response_dict["Records"] = [_record(raw) for raw in records]
    response_dict["body"] = b"{}"  # what is left for botocore: the response metadata


@asynccontextmanager
async def kinesis_client(settings: Settings, config: AioConfig | None = None) -> AsyncIterator[KinesisClient]:
    session = get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_fast_timestamp)
    kwargs: dict[str, Any] = {"region_name": settings.aws_region, "config": config or client_config()}
    if settings.kinesis_endpoint_url:
        kwargs["endpoint_url"] = settings.kinesis_endpoint_url
        if is_local_endpoint(settings.kinesis_endpoint_url) and await session.get_credentials() is None:
            kwargs.update(_EMULATOR_CREDENTIALS)
    async with session.create_client("kinesis", **kwargs) as client:
        client.meta.events.register("before-parse.kinesis.GetRecords", _parse_get_records)
        yield client
