"""(c) What the reference design does: native predict per request and one put_record per request.

Models are the native LightGBM/scikit-learn objects pickled by bench/api.py (BENCH_NATIVE_MODELS).
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from api.app import NO_OPENTELEMETRY
from api.schemas import PredictRequest
from fraudflow.aws import kinesis_client
from fraudflow.config import load_settings

settings = load_settings()
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    models = await asyncio.to_thread(Path(os.environ["BENCH_NATIVE_MODELS"]).read_bytes)
    state["classifier"], state["detector"] = pickle.loads(models)  # noqa: S301 - our own file
    async with kinesis_client(settings) as client:
        state["client"] = client
        yield


app = FastAPI(lifespan=lifespan, telemetry=NO_OPENTELEMETRY)


@app.post("/predict")
async def predict(body: PredictRequest) -> dict[str, Any]:
    row = body.data[None, :]
    proba = float(state["classifier"].predict_proba(row)[0, 1])
    anomaly = float(-state["detector"].decision_function(row)[0])
    record = {
        "user_id": body.metadata.user_id,
        "fraud_proba": proba,
        "anomaly_score": anomaly,
        "timestamp": body.metadata.timestamp.isoformat(),
    }
    await state["client"].put_record(
        StreamName=settings.stream_name, Data=orjson.dumps(record), PartitionKey=body.metadata.user_id
    )
    return {
        "anomaly_detector": {"score": anomaly},
        "fraud_classifier": {"pred_proba": proba, "prediction": int(proba >= 0.5)},
    }
