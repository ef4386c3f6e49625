"""moto's server mode, served by uvicorn so that HTTP connections are kept alive.

`python -m moto.server` runs werkzeug's development server, which answers every request with
`Connection: close`: each client call then pays a new TCP connection and the server a new thread, which
more than doubled the client-side cost of a PutRecords call. Real Kinesis keeps connections alive; so does
this launcher (moto's WSGI app behind a2wsgi's WSGI-to-ASGI bridge, on uvicorn).
Usage: python -m fraudflow.local.moto_server HOST PORT
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def _constant_time_shards() -> None:
    """Keep a moto shard's cost flat as it fills up (it never trims: the embedded server keeps everything).

    moto 5 finds a shard's last sequence number by listing every record, on every put, and scans a shard from
    its first record on every GetRecords: measured here, a 100-record PutRecords went from 13 ms to 62 ms over
    80,000 stored records, which a day of `fraudflow up` or any benchmark reaches. moto numbers a shard's
    records 1, 2, 3, ... (a reshard re-puts them into the new shards), so both become dictionary look-ups;
    anything else falls back to moto's own scan.
    """
    from moto.kinesis.models import Shard

    scan = Shard.get_records

    def last_sequence_number(self: Shard) -> int:
        return next(reversed(self.records)) if self.records else 0

    def first_sequence_number(self: Shard) -> int:
        return next(iter(self.records)) if self.records else 0

    def get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list[Any], int, int]:
        records = self.records
        if not records:
            return [], int(last_sequence_id), 0
        after = int(last_sequence_id)
        number = max(after + 1, first_sequence_number(self))
        found: list[Any] = []
        while number in records and (limit is None or len(found) < limit):
            found.append(records[number])
            number += 1
        if not found:
            if number <= last_sequence_number(self):  # a gap in the numbering: not moto's own layout
                return scan(self, last_sequence_id, limit)
            return [], after, 0
        newest = records[last_sequence_number(self)]
        return found, found[-1].sequence_number, int((newest.created_at - found[-1].created_at) * 1000)

    Shard.get_max_sequence_number = last_sequence_number  # type: ignore[method-assign]
    Shard.get_min_sequence_number = first_sequence_number  # type: ignore[method-assign]
    Shard.get_records = get_records  # type: ignore[method-assign]


def _cached_module_list() -> None:
    """moto lists its package folder (a stat per service) on every request to route it: 40% of a one-record
    PutRecords' server CPU, measured. The folder does not change while the server runs."""
    from moto import backends

    listing = backends.list_of_moto_modules
    backends.list_of_moto_modules = functools.cache(lambda: tuple(listing()))


def _lean_put_records() -> None:
    """Two costs of moto's PutRecords that the embedded server does not need.

    - moto records CloudWatch metrics for every put and keeps them for the life of the process, so the
      server's memory grows with every call of a long `fraudflow up`. Nothing here reads them.
    - Its generic response serializer walks the output shape once per record: with the metrics, a quarter
      of a 30-record call's server CPU (measured 3.8 ms to 2.8 ms). The answer is plain JSON of the
      backend's result, as the serializer would write it.
    """
    from moto.kinesis.models import KinesisBackend
    from moto.kinesis.responses import KinesisResponse

    KinesisBackend._send_stream_metrics = lambda self, *args, **kwargs: None  # type: ignore[method-assign]

    def put_records(self: KinesisResponse) -> str:
        result = self.kinesis_backend.put_records(
            self._get_param("StreamARN"), self._get_param("StreamName"), self._get_param("Records")
        )
        return json.dumps(result)

    KinesisResponse.put_records = put_records  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    _constant_time_shards()
    _cached_module_list()
    _lean_put_records()
    # One worker: moto's Kinesis backend is not thread-safe (put_record takes max(sequence) + 1 without a
    # lock, so concurrent PutRecords on a shard can overwrite each other's records). Its work holds the GIL
    # anyway, so serial requests cost little.
    app = WSGIMiddleware(DomainDispatcherApplication(create_backend_app), workers=1)  # type: ignore[arg-type]
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
