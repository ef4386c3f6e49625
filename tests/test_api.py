"""The scoring API in-process: contract, bad input, idempotency, batch, security, and Kinesis delivery."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from api.exposure import PATHS
from api.middleware import mask_ip
from api.schemas import EXAMPLE_REQUEST
from api.security import LOOPBACK_CLIENT
from fraudflow.config import OPEN_PATH_GROUPS, DeliveryMode, Environment, Settings, SettingsError, load_settings
from fraudflow.events import ScoredEvent, event_id_for
from tests.faultproxy import FaultProxy
from tests.streams import read_stream, wait_for_records

REFERENCE_CLIENT_BODY = {
    # What the reference design's generate_data.py sends: a naive local time, ', '-joined data,
    # a random private IP, and no device or geo blocks.
    "metadata": {
        "timestamp": "2025-08-21T17:45:00.123456",
        "user_id": "user_42",
        "source": "mobile_app",
        "ip_address": "192.168.1.77",
    },
    "data": ", ".join(["0.0"] * 29 + ["149.62"]),
}


@asynccontextmanager
async def running(
    settings: Settings, client: tuple[str, int] = ("127.0.0.1", 40000)
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield app, http


def body(**metadata: Any) -> dict[str, Any]:
    value = copy.deepcopy(EXAMPLE_REQUEST)
    value["metadata"].update(metadata)
    return value


@pytest.fixture
def fast(settings: Settings) -> Callable[..., Settings]:
    def make(**update: Any) -> Settings:
        return settings.model_copy(update={"publish_timeout_s": 1.0, **update})

    return make


async def test_reference_client_payload(settings: Settings) -> None:
    async with running(settings) as (_, http):
        response = await http.post("/predict", json=REFERENCE_CLIENT_BODY)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) >= {"anomaly_detector", "fraud_classifier", "event_id", "decision", "model_version", "timing"}
    assert 0 <= data["anomaly_detector"]["score"] <= 1
    assert 0 <= data["fraud_classifier"]["pred_proba"] <= 1
    assert data["fraud_classifier"]["prediction"] == int(data["decision"] == "decline")
    assert response.headers["x-request-id"]
    (record,) = await read_stream(settings)
    event = ScoredEvent.model_validate_json(record["Data"])
    assert record["PartitionKey"] == "user_42"
    assert str(event.event_id) == data["event_id"]
    assert event.timestamp.isoformat() == "2025-08-21T17:45:00.123456+00:00"  # naive taken as UTC
    assert event.ip_address == "192.168.1.77"
    assert event.amount == pytest.approx(149.62)
    assert event.features[-1] == pytest.approx(149.62)
    assert (event.device_info, event.geo) == (None, None)
    assert event.fraud_proba == pytest.approx(data["fraud_classifier"]["pred_proba"])


async def test_every_answered_request_is_on_the_stream_once(settings: Settings) -> None:
    async with running(settings) as (_, http):
        responses = await asyncio.gather(*(http.post("/predict", json=body(user_id=f"u{i % 9}")) for i in range(150)))
    assert all(r.status_code == 200 for r in responses)
    ids = sorted(r.json()["event_id"] for r in responses)
    records = await read_stream(settings)
    assert sorted(str(ScoredEvent.model_validate_json(r["Data"]).event_id) for r in records) == ids


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["metadata"].pop("user_id"), ["body", "metadata", "user_id"]),
        (lambda b: b["metadata"].update(timestamp="yesterday"), ["body", "metadata", "timestamp"]),
        (lambda b: b["metadata"].update(timestamp=1755798300000), ["body", "metadata", "timestamp"]),
        (lambda b: b["metadata"].update(geo={"longitude": False}), ["body", "metadata", "geo", "longitude"]),
        (lambda b: b.update(data=", ".join(["1"] * 29 + ["\u0661"])), ["body", "data"]),  # ARABIC-INDIC ONE
        (lambda b: b["metadata"].update(ip_address="999.1.1.1"), ["body", "metadata", "ip_address"]),
        (lambda b: b["metadata"].update(geo={"latitude": 123}), ["body", "metadata", "geo", "latitude"]),
        (lambda b: b.update(data="1, 2, 3"), ["body", "data"]),
        (lambda b: b.update(data=", ".join(["1"] * 29 + ["nan"])), ["body", "data"]),
        (lambda b: b.update(data=[1, 2, 3]), ["body", "data"]),
        (lambda b: b.pop("metadata"), ["body", "metadata"]),
    ],
)
async def test_bad_input_names_the_field(
    settings: Settings, mutate: Callable[[dict[str, Any]], Any], field: list[str]
) -> None:
    payload = body()
    mutate(payload)
    async with running(settings) as (_, http):
        response = await http.post("/predict", json=payload)
    assert response.status_code == 422
    assert field in [item["loc"] for item in response.json()["detail"]]
    assert await read_stream(settings) == []


async def test_transport_level_errors(settings: Settings) -> None:
    async with running(settings.model_copy(update={"max_body_bytes": 2048})) as (_, http):
        not_json = await http.post("/predict", content=b"{oops", headers={"content-type": "application/json"})
        form = await http.post("/predict", data={"a": "1"})
        big = await http.post("/predict", json=body(note="x" * 5000))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 500

        chunked = await http.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        array = await http.post("/predict", json=[1, 2])
    assert not_json.status_code == 422
    assert form.status_code == 415
    assert big.status_code == 413
    assert chunked.status_code == 413
    assert array.status_code == 422
    for response in (not_json, form, big, chunked, array):
        assert "detail" in response.json()


async def test_unknown_fields_are_ignored(settings: Settings) -> None:
    payload = body(future_field={"nested": [1, 2]})
    payload["extra_top_level"] = "ignored"
    async with running(settings) as (_, http):
        assert (await http.post("/predict", json=payload)).status_code == 200


async def test_idempotency_key_gives_the_same_event_id(settings: Settings) -> None:
    async with running(settings) as (_, http):
        first = await http.post("/predict", json=body(transaction_id="tx-1"))
        retry = await http.post("/predict", json=body(transaction_id="tx-1"))
        header = await http.post("/predict", json=body(), headers={"Idempotency-Key": "tx-1"})
        other = await http.post("/predict", json=body(transaction_id="tx-2"))
        fresh = [await http.post("/predict", json=body()) for _ in range(2)]
    assert first.json()["event_id"] == retry.json()["event_id"] == header.json()["event_id"]
    assert other.json()["event_id"] != first.json()["event_id"]
    assert fresh[0].json()["event_id"] != fresh[1].json()["event_id"]
    assert uuid.UUID(first.json()["event_id"]).version == 5


async def test_idempotency_keys_are_scoped_to_the_client_and_the_user(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("k-one,k-two")})
    one, two = {"X-API-Key": "k-one"}, {"X-API-Key": "k-two"}
    async with running(keyed, client=("203.0.113.9", 5555)) as (_, http):
        alice = await http.post("/predict", json=body(user_id="alice", transaction_id="order-1"), headers=one)
        again = await http.post("/predict", json=body(user_id="alice", transaction_id="order-1"), headers=one)
        bob = await http.post("/predict", json=body(user_id="bob", transaction_id="order-1"), headers=one)
        other_client = await http.post("/predict", json=body(user_id="alice", transaction_id="order-1"), headers=two)
    ids = [r.json()["event_id"] for r in (alice, again, bob, other_client)]
    assert ids[0] == ids[1]  # a retry
    assert len(set(ids[1:])) == 3  # another user, another client: other payments, stored apart
    assert len({ScoredEvent.model_validate_json(r["Data"]).event_id for r in await read_stream(settings)}) == 3


async def test_batch_reports_errors_per_item(settings: Settings) -> None:
    bad = body()
    bad["data"] = "1,2"
    async with running(settings) as (_, http):
        response = await http.post("/predict/batch", json={"transactions": [body(), bad, body(user_id="b")]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [("result" in r, "error" in r) for r in results] == [(True, False), (False, True), (True, False)]
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["detail"][0]["loc"] == ["data"]
    assert len(await wait_for_records(settings, 2)) == 2


async def test_batch_limit(settings: Settings) -> None:
    async with running(settings.model_copy(update={"predict_batch_max": 3})) as (_, http):
        response = await http.post("/predict/batch", json={"transactions": [body()] * 4})
        empty = await http.post("/predict/batch", json={"transactions": []})
    assert response.status_code == 413
    assert empty.status_code == 422


async def test_ack_mode_returns_503_while_kinesis_is_down_and_recovers(
    proxied_settings: Settings, fault_proxy: FaultProxy, fast: Callable[..., Settings]
) -> None:
    settings = proxied_settings.model_copy(update={"publish_timeout_s": 0.5})
    async with running(settings) as (_, http):
        fault_proxy.down = True
        down = await http.post("/predict", json=body(transaction_id="tx-down"))
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        fault_proxy.down = False
        deadline = asyncio.get_running_loop().time() + 15
        while (retry := await http.post("/predict", json=body(transaction_id="tx-down"))).status_code == 503:
            assert asyncio.get_running_loop().time() < deadline, "did not recover after Kinesis came back"
        assert retry.status_code == 200
        assert retry.json()["event_id"] == str(event_id_for(LOOPBACK_CLIENT, "u_123", "tx-down"))
        assert down.json()["event_id"] == retry.json()["event_id"]
        assert down.json()["idempotency_key"] == "tx-down"
    # Attempts that timed out were still published: same event id, so the consumer stores it once.
    events = {ScoredEvent.model_validate_json(r["Data"]).event_id for r in await read_stream(settings)}
    assert events == {uuid.UUID(retry.json()["event_id"])}


async def test_a_503_says_how_to_retry_without_a_second_event(
    proxied_settings: Settings, fault_proxy: FaultProxy
) -> None:
    """A client that sent no key still gets one in the 503: its retry is the same event, whether or not the
    first attempt is published late."""
    settings = proxied_settings.model_copy(update={"publish_timeout_s": 0.3})
    fault_proxy.delay("PutRecords", 1.0, times=1)
    async with running(settings) as (_, http):
        late = await http.post("/predict", json=body())
        assert late.status_code == 503
        answer = late.json()
        assert answer["published"] == "maybe"
        assert late.headers["idempotency-key"] == answer["idempotency_key"]
        await wait_for_records(settings, 1)  # the late attempt was published after all
        retry = await http.post("/predict", json=body(), headers={"Idempotency-Key": answer["idempotency_key"]})
        assert retry.status_code == 200
        assert retry.json()["event_id"] == answer["event_id"]
        await wait_for_records(settings, 2)
    records = await read_stream(settings)
    assert len(records) == 2  # the late first attempt and the retry ...
    assert {ScoredEvent.model_validate_json(r["Data"]).event_id for r in records} == {uuid.UUID(answer["event_id"])}


async def test_the_answer_comes_within_the_publish_timeout_even_when_scoring_is_slow(settings: Settings) -> None:
    # The micro-batcher waits 3 s for a batch to fill: far past the 0.3 s the client was promised.
    slow = settings.model_copy(update={"publish_timeout_s": 0.3, "score_batch_wait_ms": 3_000.0})
    async with running(slow) as (_, http):
        started = asyncio.get_running_loop().time()
        response = await http.post("/predict", json=body(transaction_id="slow-1"))
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status_code == 503
        assert elapsed < 1.5
        answer = response.json()
        assert answer["published"] == "no"
        assert "scoring_timeout" in answer["detail"]
        assert answer["event_id"] == str(event_id_for(LOOPBACK_CLIENT, "u_123", "slow-1"))
    assert await read_stream(settings) == []  # scored after the answer, but never published


async def test_async_mode_answers_at_once_and_flushes_on_shutdown(
    proxied_settings: Settings, fault_proxy: FaultProxy
) -> None:
    settings = proxied_settings.model_copy(update={"delivery_mode": DeliveryMode.ASYNC})
    fault_proxy.delay("PutRecords", 0.3, times=2)
    async with running(settings) as (_, http):
        responses = [await http.post("/predict", json=body(user_id=f"u{i}")) for i in range(20)]
        assert all(r.status_code == 200 for r in responses)
        assert all(r.json()["timing"]["publish_ms"] < 100 for r in responses)
    # Leaving the lifespan is the shutdown: every acknowledged event must be on the stream by then.
    assert len(await read_stream(settings)) == 20


async def test_async_mode_full_buffer_is_503(proxied_settings: Settings, fault_proxy: FaultProxy) -> None:
    settings = proxied_settings.model_copy(update={"delivery_mode": DeliveryMode.ASYNC, "publish_buffer_records": 2})
    fault_proxy.down = True
    async with running(settings) as (_, http):
        codes = [(await http.post("/predict", json=body(user_id=f"u{i}"))).status_code for i in range(3)]
        fault_proxy.down = False
    assert codes == [200, 200, 503]
    assert len(await read_stream(settings)) == 2


async def test_api_keys(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("k-one, k-two")})
    async with running(keyed, client=("203.0.113.9", 5555)) as (_, http):
        none = await http.post("/predict", json=body())
        wrong = await http.post("/predict", json=body(), headers={"X-API-Key": "nope"})
        header = await http.post("/predict", json=body(), headers={"X-API-Key": "k-two"})
        bearer = await http.post("/predict", json=body(), headers={"Authorization": "Bearer k-one"})
        health = await http.get("/healthz")
    assert (none.status_code, wrong.status_code) == (401, 401)
    assert none.headers["www-authenticate"] == "Bearer"
    assert (header.status_code, bearer.status_code, health.status_code) == (200, 200, 200)


async def test_batch_checks_the_key_before_reading_the_body(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("k-one")})
    garbage = b"{" * 100_000  # parsing it would fail: a 401 proves it was never parsed
    async with running(keyed, client=("203.0.113.9", 5555)) as (_, http):
        anonymous = await http.post("/predict/batch", content=garbage, headers={"Content-Type": "application/json"})
        malformed = await http.post(
            "/predict/batch", content=b"{", headers={"Content-Type": "application/json", "X-API-Key": "k-one"}
        )
        single = await http.post(
            "/predict", content=b"{", headers={"Content-Type": "application/json", "X-API-Key": "k-one"}
        )
    assert anonymous.status_code == 401
    assert (malformed.status_code, single.status_code) == (422, 422)  # both routes answer bad JSON alike
    assert malformed.json()["detail"][0]["loc"][0] == "body"


async def test_operator_paths_are_open_or_keyed_as_configured(settings: Settings) -> None:
    keys = {"api_keys": SecretStr("client-key"), "admin_keys": SecretStr("admin-key")}
    remote = ("203.0.113.9", 5555)
    async with running(settings.model_copy(update=keys), client=remote) as (_, http):
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert (await http.get(path)).status_code == 200, f"{path} is open by default"
    private = settings.model_copy(update={**keys, "api_open_paths": "readyz"})
    async with running(private, client=remote) as (_, http):
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert "FRAUDFLOW_API_OPEN_PATHS" in refused.json()["detail"]
            for key in ("client-key", "admin-key"):
                assert (await http.get(path, headers={"X-API-Key": key})).status_code == 200, (path, key)
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200


def test_open_paths_name_known_groups() -> None:
    assert set(PATHS) == set(OPEN_PATH_GROUPS)
    with pytest.raises(SettingsError, match="unknown admin: choose among readyz, metrics, docs"):
        load_settings(_env_file=None, FRAUDFLOW_API_OPEN_PATHS="readyz,admin")


async def test_without_keys_only_loopback_is_served(settings: Settings) -> None:
    async with running(settings, client=("203.0.113.9", 5555)) as (_, http):
        assert (await http.post("/predict", json=body())).status_code == 403
    async with running(settings, client=("::1", 5555)) as (_, http):
        assert (await http.post("/predict", json=body())).status_code == 200


def test_production_refuses_to_start_without_keys(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="FRAUDFLOW_API_KEYS"):
        create_app(settings.model_copy(update={"env": Environment.PRODUCTION}))


async def test_admin_reload(settings: Settings, tmp_path: Any) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("client-key"), "admin_keys": SecretStr("admin-key")})
    async with running(keyed, client=("203.0.113.9", 5555)) as (app, http):
        unauthenticated = await http.post("/admin/reload-models")
        client_key = await http.post("/admin/reload-models", headers={"X-API-Key": "client-key"})
        admin_scores = await http.post("/predict", json=body(), headers={"X-API-Key": "admin-key"})
        ok = await http.post("/admin/reload-models", headers={"X-API-Key": "admin-key"})
        app.state.services.scorer.root = tmp_path  # point the next reload at an empty directory
        refused = await http.post("/admin/reload-models", headers={"X-API-Key": "admin-key"})
        still = await http.post("/predict", json=body(), headers={"X-API-Key": "client-key"})
    assert (unauthenticated.status_code, client_key.status_code, admin_scores.status_code) == (401, 401, 401)
    assert ok.status_code == 200
    assert ok.json()["model_version"] == ok.json()["previous_version"]
    assert refused.status_code == 409
    assert "no manifest.json" in refused.json()["detail"]
    assert still.status_code == 200


async def test_admin_routes_without_admin_keys_serve_loopback_only(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("client-key")})
    async with running(keyed, client=("203.0.113.9", 5555)) as (_, http):
        remote = await http.post("/admin/reload-models", headers={"X-API-Key": "client-key"})
    async with running(keyed) as (_, http):
        local = await http.post("/admin/reload-models")
    assert remote.status_code == 403
    assert "FRAUDFLOW_ADMIN_KEYS" in remote.json()["detail"]
    assert local.status_code == 200


async def test_health_readiness_and_metrics(settings: Settings) -> None:
    async with running(settings) as (_, http):
        await http.post("/predict", json=body())
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    for name in (
        "fraudflow_api_requests_total",
        "fraudflow_api_request_seconds_bucket",
        "fraudflow_scoring_batch_rows_bucket",
        "fraudflow_kinesis_put_seconds_bucket",
        "fraudflow_kinesis_buffer_records",
        "fraudflow_model_info",
        "fraudflow_kinesis_publish_failures",
        "fraudflow_api_event_loop_lag_seconds_bucket",
    ):
        assert name in metrics
    assert 'route="/predict",status="200"' in metrics


async def test_not_ready_when_the_stream_is_missing(settings: Settings) -> None:
    async with running(settings.model_copy(update={"stream_name": "no-such-stream"})) as (_, http):
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert "no-such-stream" in ready.json()["problems"][0]


async def test_invented_http_methods_share_one_metrics_label(settings: Settings) -> None:
    async with running(settings) as (_, http):
        for n in range(5):
            await http.request(f"BREW{n}", "/healthz")
        metrics = (await http.get("/metrics")).text
    assert 'method="OTHER"' in metrics
    assert "BREW" not in metrics


async def test_request_ids_are_unique_or_echoed(settings: Settings) -> None:
    async with running(settings) as (_, http):
        first, second = [(await http.get("/healthz")).headers["x-request-id"] for _ in range(2)]
        echoed = (await http.get("/healthz", headers={"X-Request-ID": "client-abc.1"})).headers["x-request-id"]
        unsafe = (await http.get("/healthz", headers={"X-Request-ID": "bad id\n"})).headers["x-request-id"]
    assert first != second
    assert echoed == "client-abc.1"
    assert unsafe not in ("bad id\n", first, second)


def test_ip_masking() -> None:
    assert mask_ip("203.0.113.77") == "203.0.113.0"
    assert mask_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert mask_ip(None) is None


async def test_openapi_documents_the_contract(settings: Settings) -> None:
    async with running(settings) as (_, http):
        schema = (await http.get("/openapi.json")).json()
    predict = schema["paths"]["/predict"]["post"]
    assert {"200", "401", "413", "415", "422", "503"} <= set(predict["responses"])
    assert "/predict/batch" in schema["paths"]
    assert "/admin/reload-models" in schema["paths"]
    for path, model in (("/predict", "PredictResponse"), ("/predict/batch", "BatchResponse"), ("/readyz", "Readiness")):
        operation = next(iter(schema["paths"][path].values()))
        documented = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert documented == {"$ref": f"#/components/schemas/{model}"}, path
    assert schema["components"]["schemas"]["PredictRequest"]["examples"]
