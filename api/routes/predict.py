"""POST /predict and POST /predict/batch."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.deps import Services
from api.responses import JSONResponse, error_items, problem
from api.schemas import BatchRequest, BatchResponse, PredictRequest, PredictResponse
from api.security import authorize

_item = TypeAdapter(PredictRequest)
RETRY_AFTER = {"Retry-After": "1"}
SECURED: dict[str, Any] = {"security": [{"ApiKeyHeader": []}, {"BearerKey": []}]}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Same as metadata.transaction_id: a retry with the same key gets the same event_id.",
    "schema": {"type": "string", "maxLength": 128},
}

REF_TEMPLATE = "#/components/schemas/{model}"
# Both routes are plain Starlette routes, not FastAPI path operations: FastAPI's request handling (dependency
# solving, response model handling) cost about a third of the API's CPU per transaction (measured under wrk:
# 650-700 against 460-495 us). Each reads the idempotency header, checks the key and validates its body
# inline, in that order: an unauthenticated body is never parsed, and pydantic parses the JSON bytes faster
# than json.loads followed by validation. The app documents them from OPERATIONS and these models.
DOCUMENTED_MODELS = (PredictRequest, BatchRequest, PredictResponse, BatchResponse)


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _ok(model: type[BaseModel]) -> dict[str, Any]:
    return {"description": "Successful Response", "content": {"application/json": {"schema": _ref(model)}}}


_UNAVAILABLE: dict[str, dict[str, Any]] = {
    "503": {
        "description": "The event could not be published in time (`published: maybe`: it may still be) or "
        "not at all (`published: no`). Retry after Retry-After with the `idempotency_key` of the answer (also "
        "its Idempotency-Key header) as Idempotency-Key or metadata.transaction_id: the retry is the same "
        "event (`event_id`), so one payment never becomes two events."
    },
}
_ERRORS: dict[str, dict[str, Any]] = {
    "401": {"description": "Missing or invalid API key"},
    "413": {"description": "Body too large"},
    "415": {"description": "Body is not JSON"},
    "422": {"description": "Invalid request: `detail` lists each bad field (`loc`) and the problem (`msg`)"},
}


async def predict(request: Request) -> Response:
    services: Services = request.app.state.services
    client = authorize(request, services.settings)
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as error:
        return problem(422, error_items(error.errors(), under=("body",)))
    key = body.metadata.transaction_id or request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 128:
        detail = [{"loc": ["header", "Idempotency-Key"], "msg": "must be 1 to 128 characters", "type": "string"}]
        return problem(422, detail)
    (outcome,) = await services.scoring.predict([body], [key], client)
    if outcome.unavailable:
        return JSONResponse(
            outcome.unavailable_body(),
            status_code=503,
            headers={**RETRY_AFTER, "Idempotency-Key": outcome.idempotency_key},
        )
    return JSONResponse(outcome.body)


async def predict_batch(request: Request) -> Response:
    services: Services = request.app.state.services
    client = authorize(request, services.settings)  # before the body is read: an unauthenticated body costs nothing
    try:
        body = BatchRequest.model_validate_json(await request.body())
    except ValidationError as error:
        return problem(422, error_items(error.errors(), under=("body",)))
    service = services.scoring
    limit = service.settings.predict_batch_max
    if len(body.transactions) > limit:
        return problem(413, f"{len(body.transactions)} transactions in one batch; the limit is {limit}")
    results: list[dict[str, Any]] = [{"index": i} for i in range(len(body.transactions))]
    valid: list[tuple[int, PredictRequest]] = []
    for index, raw in enumerate(body.transactions):
        try:
            valid.append((index, _item.validate_python(raw)))
        except ValidationError as error:
            results[index]["error"] = {"status": 422, "detail": error_items(error.errors())}
    if valid:
        outcomes = await service.predict(
            [item for _, item in valid], [item.metadata.transaction_id for _, item in valid], client
        )
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            if outcome.unavailable:
                results[index]["error"] = {"status": 503, **outcome.unavailable_body()}
            else:
                results[index]["result"] = outcome.body
    version = service.batcher.scorer.models.version
    return JSONResponse({"results": results, "model_version": version})


class _Route(Route):
    """A Starlette route that names itself in the scope, as FastAPI's do, for the per-route metrics."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


ROUTES = [
    _Route("/predict", predict, methods=["POST"], include_in_schema=False),
    _Route("/predict/batch", predict_batch, methods=["POST"], include_in_schema=False),
]

OPERATIONS: dict[str, dict[str, Any]] = {
    "/predict": {
        "post": {
            "summary": "Score one transaction and publish the scored event",
            "operationId": "predict",
            **SECURED,
            "parameters": [_IDEMPOTENCY_HEADER],
            "requestBody": _request_body(PredictRequest),
            "responses": {"200": _ok(PredictResponse), **_ERRORS, **_UNAVAILABLE},
        }
    },
    "/predict/batch": {
        "post": {
            "summary": "Score up to FRAUDFLOW_PREDICT_BATCH_MAX transactions; errors are reported per item",
            "operationId": "predict_batch",
            **SECURED,
            "requestBody": _request_body(BatchRequest),
            "responses": {"200": _ok(BatchResponse), **_ERRORS},
        }
    },
}
