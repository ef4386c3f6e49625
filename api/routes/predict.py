"""POST /predict and POST /predict/batch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.deps import Services
from api.responses import JSONResponse, error_items, problem
from api.schemas import BatchRequest, BatchResponse, PredictRequest, PredictResponse
from api.security import authorize

router = APIRouter()
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
# Both routes read the idempotency header, check the key and validate their body inline, in that order: an
# unauthenticated body is never parsed, each FastAPI dependency (the body is one) costs about as much CPU in
# the dependency solver as validating the whole body, and pydantic parses the JSON bytes faster than
# json.loads followed by validation. The app adds these bodies' schemas to the OpenAPI document.
INLINE_BODIES = (PredictRequest, BatchRequest)


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}},
    }


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The event could not be published in time (`published: maybe`: it may still be) or "
        "not at all (`published: no`). Retry after Retry-After with the `idempotency_key` of the answer (also "
        "its Idempotency-Key header) as Idempotency-Key or metadata.transaction_id: the retry is the same "
        "event (`event_id`), so one payment never becomes two events."
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key"},
    413: {"description": "Body too large"},
    415: {"description": "Body is not JSON"},
    422: {"description": "Invalid request: `detail` lists each bad field (`loc`) and the problem (`msg`)"},
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={**_ERRORS, **_UNAVAILABLE},
    summary="Score one transaction and publish the scored event",
    openapi_extra={**SECURED, "parameters": [_IDEMPOTENCY_HEADER], "requestBody": _request_body(PredictRequest)},
)
async def predict(request: Request) -> Any:
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


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    summary="Score up to FRAUDFLOW_PREDICT_BATCH_MAX transactions; errors are reported per item",
    openapi_extra={**SECURED, "requestBody": _request_body(BatchRequest)},
)
async def predict_batch(request: Request) -> Any:
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
