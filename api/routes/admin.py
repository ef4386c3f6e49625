"""POST /admin/reload-models: swap in retrained models without downtime."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import Services, admin_authorized, services
from api.responses import problem
from api.routes.predict import SECURED
from api.schemas import ReloadResult
from fraudflow.logging import get_logger
from fraudflow.scoring import ModelError

router = APIRouter(dependencies=[Depends(admin_authorized)])
log = get_logger(__name__)


@router.post(
    "/admin/reload-models",
    openapi_extra=SECURED,
    summary="Reload the model registry: the champion (verified before it is swapped in) and its challenger",
    response_model=ReloadResult,
    responses={
        401: {"description": "Missing or invalid admin key (FRAUDFLOW_ADMIN_KEYS; client keys are refused)"},
        403: {"description": "No admin keys configured and the client is not on loopback"},
        409: {"description": "The new model set is invalid; the current one keeps serving"},
    },
)
async def reload_models(services: Annotated[Services, Depends(services)]) -> Any:
    previous = services.scorer.models.version
    try:
        models = await asyncio.to_thread(services.scorer.reload)
    except ModelError as error:
        log.error(
            "model reload refused", error=str(error), serving=previous, directory=str(services.scorer.models.directory)
        )
        return problem(409, f"reload refused, still serving {previous}: {error}")
    scorer = services.scorer
    challenger = scorer.challenger.version if scorer.challenger else None
    services.metrics.serving(models.version, challenger)
    if scorer.challenger_error:
        log.error("challenger not scored", error=scorer.challenger_error)
    log.info("models reloaded", previous=previous, version=models.version, challenger=challenger)
    return {
        "previous_version": previous,
        "model_version": models.version,
        "challenger_version": challenger,
        "challenger_problem": scorer.challenger_error,
    }
