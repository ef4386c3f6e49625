"""(a) The framework's ceiling: FastAPI validating the same request model, doing nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import NO_OPENTELEMETRY
from api.schemas import PredictRequest

app = FastAPI(telemetry=NO_OPENTELEMETRY)  # configured like the real API, for a fair ceiling


@app.post("/predict")
async def predict(body: PredictRequest) -> dict[str, str]:
    return {"user_id": body.metadata.user_id}
