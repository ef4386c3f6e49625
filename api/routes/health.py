"""GET /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Services, services
from api.responses import JSONResponse
from api.schemas import Readiness

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Models loaded, the Kinesis stream ACTIVE and the publish backlog draining",
    response_model=Readiness,
    responses={503: {"description": "Not ready: `problems` says why", "model": Readiness}},
)
async def readyz(services: Annotated[Services, Depends(services)]) -> Any:
    problems = await services.readiness.problems()
    body = {
        "status": "ready" if not problems else "not ready",
        "model_version": services.scorer.models.version,
        "stream": services.settings.stream_name,
        "buffered_records": services.scoring.producer.depth,
        "oldest_buffered_s": round(services.scoring.producer.oldest_age_s(), 3),
        "problems": problems,
        # Stale rules and lists keep applying (the last ones loaded): said here, not a reason to take traffic away.
        "policy": services.policy.status(),
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(services: Annotated[Services, Depends(services)]) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
