"""moto's server mode, served by uvicorn so that HTTP connections are kept alive.

`python -m moto.server` runs werkzeug's development server, which answers every request with
`Connection: close`: each client call then pays a new TCP connection and the server a new thread, which
more than doubled the client-side cost of a PutRecords call. Real Kinesis keeps connections alive; so does
this launcher (moto's WSGI app behind a2wsgi's WSGI-to-ASGI bridge, on uvicorn).
Usage: python -m fraudflow.local.moto_server HOST PORT
"""

from __future__ import annotations

import sys

import uvicorn
from a2wsgi import WSGIMiddleware
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    # One worker: moto's Kinesis backend is not thread-safe (put_record takes max(sequence) + 1 without a
    # lock, so concurrent PutRecords on a shard can overwrite each other's records). Its work holds the GIL
    # anyway, so serial requests cost little.
    app = WSGIMiddleware(DomainDispatcherApplication(create_backend_app), workers=1)  # type: ignore[arg-type]
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
