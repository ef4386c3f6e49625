"""JSON responses and error bodies: orjson on the hot path, and 4xx bodies that name each bad field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi.responses import JSONResponse as FastAPIJSONResponse


class JSONResponse(FastAPIJSONResponse):
    """orjson rendering; a JSONResponse subclass, so OpenAPI documents routes' response models as JSON."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z)


def error_items(errors: Sequence[Any], under: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as {loc, msg, type}: the field path (below `under`) and the problem, never the value."""
    items = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        items.append(
            {
                "loc": [*under, *(str(p) for p in error.get("loc", ()))],
                "msg": message.removeprefix("Value error, "),
                "type": str(error.get("type", "value_error")),
            }
        )
    return items


def problem(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
