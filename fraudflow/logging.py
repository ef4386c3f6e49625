"""structlog, configured once: JSON lines in production, readable console output on a TTY.

The stdlib loggers (uvicorn, asyncpg, botocore) are routed through the same processors so every line in a
deployment has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from fraudflow.config import LogFormat, Settings

# uvicorn.access is replaced by our own access log, which masks client addresses.
_QUIET_LIBRARIES = ("botocore", "aiobotocore", "urllib3", "asyncio", "werkzeug", "uvicorn.access")


def _wants_json(settings: Settings) -> bool:
    if settings.log_format is LogFormat.AUTO:
        return settings.production or not sys.stderr.isatty()
    return settings.log_format is LogFormat.JSON


def configure_logging(settings: Settings) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if _wants_json(settings):
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        # Drop disabled levels first, before any processor spends time on the event.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn installs its own handlers; hand its records to ours instead.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
