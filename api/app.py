"""The app factory: settings in, a FastAPI app out, its clients owned by the lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.behaviour import BehaviourLookup
from api.deps import Services
from api.exposure import GuardOperatorPaths
from api.heartbeat import beating, new_tally
from api.loop_lag import measuring_lag
from api.metrics import ApiMetrics
from api.middleware import RequestContext
from api.policy import PolicyWatcher
from api.protocol import STATE_KEY
from api.readiness import Readiness
from api.responses import JSONResponse, error_items, problem
from api.routes import admin, health, labels, policy, predict
from api.routes.predict import DOCUMENTED_MODELS, OPERATIONS, REF_TEMPLATE
from api.service import ScoringService
from api.shadow import ShadowScoring
from fraudflow import __version__
from fraudflow.aws import client_config, kinesis_client
from fraudflow.batching import MicroBatcher
from fraudflow.behaviour.online import feature_store
from fraudflow.config import Settings, SettingsError, load_settings
from fraudflow.db.target import DatabaseTarget, resolve_database
from fraudflow.logging import configure_logging, get_logger
from fraudflow.producer import KinesisProducer
from fraudflow.scoring import Scorer

log = get_logger("api")

DESCRIPTION = """Scores card transactions in-process with two ONNX models (a fraud classifier and an anomaly
detector) and publishes every scored event to Kinesis. Compatible with the reference design's `/predict`
contract; see docs/events.md for the published record."""


# Operators scrape Prometheus metrics (/metrics); FastAPI's built-in OpenTelemetry hooks would only add a
# per-request cost (they look up the global providers on every request).
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def check_security(settings: Settings) -> None:
    if settings.production and not settings.api_key_list:
        raise SettingsError("missing setting FRAUDFLOW_API_KEYS: required when FRAUDFLOW_ENV=production")


def document(app: FastAPI) -> None:
    """Complete the OpenAPI document: the API-key schemes (the routes check keys without a dependency), the
    scoring routes (plain Starlette routes, for speed) and the models they validate and answer with."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerKey": {"type": "http", "scheme": "bearer"},
            }
            schemas = components.setdefault("schemas", {})
            schema["paths"] = {**OPERATIONS, **schema.get("paths", {})}
            for model in DOCUMENTED_MODELS:
                definition = model.model_json_schema(ref_template=REF_TEMPLATE)
                for name, nested in definition.pop("$defs", {}).items():
                    schemas.setdefault(name, nested)
                schemas[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def policy_target(settings: Settings) -> DatabaseTarget | None:
    """Where the rules and lists are; None without a database (the model alone decides)."""
    try:
        return await resolve_database(settings)
    except SettingsError:
        return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    check_security(settings)
    configure_logging(settings)
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        scorer = await asyncio.to_thread(Scorer, settings.models_dir, settings.scoring_threads)
        metrics.serving(scorer.models.version, scorer.challenger.version if scorer.challenger else None)
        config = client_config(read_timeout=5.0, pool=settings.publish_max_in_flight + 4)
        batcher = MicroBatcher(
            scorer,
            max_rows=settings.score_batch_rows,
            max_wait_s=settings.score_batch_wait_ms / 1000,
            on_batch=metrics.scoring_batch.observe,
        )
        behaviour = BehaviourLookup(feature_store(settings), metrics, budget_s=settings.features_budget_ms / 1000)
        watcher = PolicyWatcher(await policy_target(settings), metrics)
        async with (
            batcher,
            behaviour,
            watcher.watching(),
            measuring_lag(metrics.loop_lag),
            kinesis_client(settings, config) as client,
        ):
            # On the way out the producer flushes first: nothing acknowledged to a client may be lost.
            producer = KinesisProducer(
                client,
                settings.stream_name,
                linger_s=settings.publish_linger_ms / 1000,
                max_buffer=settings.publish_buffer_records,
                max_key_buffer=settings.publish_key_buffer_records,
                max_in_flight=settings.publish_max_in_flight,
                close_timeout_s=max(5.0, settings.publish_timeout_s * 2),
                hooks=metrics.producer_hooks(),
            )
            tally = new_tally()
            shadow = ShadowScoring(scorer, producer, metrics)
            async with producer, beating(tally, producer, settings.heartbeat_s), shadow:
                metrics.buffer_depth.set_function(lambda: producer.depth)
                app.state.services = Services(
                    settings=settings,
                    metrics=metrics,
                    scorer=scorer,
                    scoring=ScoringService(settings, batcher, behaviour, watcher, producer, metrics, tally, shadow),
                    policy=watcher,
                    readiness=Readiness(client, settings.stream_name, producer, settings.publish_timeout_s),
                )
                # Everything loaded at start-up (models, botocore's service models, numpy, pydantic) lives for
                # the whole process: move it out of the collector's reach, or each full collection walks it
                # again (measured: about a third of the per-request CPU under load).
                gc.collect()
                gc.freeze()
                if behaviour.store is None:
                    log.warning("no feature store (FRAUDFLOW_REDIS_URL): scoring without behaviour features")
                if scorer.challenger_error:
                    log.error("challenger not scored", error=scorer.challenger_error)
                if watcher.target is None:
                    log.warning("no database (DATABASE_URL): no rules or lists, the model alone decides")
                if not settings.api_key_list:
                    log.warning("no API keys configured (FRAUDFLOW_API_KEYS): serving loopback clients only")
                log.info(
                    "api started",
                    model_version=scorer.models.version,
                    challenger=scorer.challenger.version if scorer.challenger else None,
                    stream=settings.stream_name,
                    delivery=settings.delivery_mode.value,
                )
                yield {STATE_KEY: settings.http_request_timeout_s}  # read by the HTTP protocol (api/protocol.py)
            log.info("api stopped", undelivered=producer.undelivered)

    app = FastAPI(
        title="fraudflow scoring API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        telemetry=NO_OPENTELEMETRY,
    )
    app.router.routes.extend(predict.ROUTES)
    app.include_router(admin.router)
    app.include_router(policy.router)
    app.include_router(labels.router)
    app.include_router(health.router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return problem(422, error_items(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(error.status_code, error.detail, headers=dict(error.headers or {}))

    document(app)
    app.add_middleware(GuardOperatorPaths, settings=settings)
    app.add_middleware(
        RequestContext, metrics=metrics, max_body=settings.max_body_bytes, max_batch_body=settings.max_batch_body_bytes
    )
    return app
