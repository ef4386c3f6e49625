"""Decisions through the API with rules and lists in the real PostgreSQL: managed with an admin key and
audited, applied by every API process within 2 s of the commit, reasons in the answer, the event and the row,
and the last policy kept (and said so) while the database is unreachable."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from fraudflow.cli.main import app as cli
from fraudflow.config import Settings
from fraudflow.decisions.backtest import backtest
from fraudflow.events import ScoredEvent
from tests.consumer_helpers import wait_until, worker
from tests.streams import read_stream
from tests.tcprelay import TcpRelay
from tests.test_api import body, running
from tests.test_api_process import uvicorn

AUTHOR = {"author": "ana"}


async def _decision(http: Any, **metadata: Any) -> dict[str, Any]:
    response = await http.post("/predict", json=body(**metadata))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_rules_are_checked_versioned_and_audited_through_the_admin_api(settings: Settings) -> None:
    async with running(settings) as (_, http):
        bad = await http.post("/admin/rules", json={"name": "r1", "when": "amout > 1.0", "action": "review", **AUTHOR})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "when"]
        assert "unknown field 'amout'" in bad.json()["detail"][0]["msg"]
        typed = await http.post(
            "/admin/rules", json={"name": "r1", "when": 'amount > "x"', "action": "review", **AUTHOR}
        )
        assert "type error" in typed.json()["detail"][0]["msg"]

        rule = {"name": "big", "when": "amount >= 100.0", "action": "review", "description": "large", **AUTHOR}
        created = await http.post("/admin/rules", json=rule)
        assert created.status_code == 201, created.text
        assert (created.json()["version"], created.json()["enabled"]) == (1, True)
        assert (await http.post("/admin/rules", json=rule)).status_code == 409
        changed = await http.patch("/admin/rules/big", json={"when": "amount >= 50.0", "author": "bob"})
        assert changed.json()["version"] == 2
        disabled = await http.patch("/admin/rules/big", json={"enabled": False, "author": "carl"})
        assert (disabled.json()["version"], disabled.json()["enabled"]) == (2, False)
        assert (await http.patch("/admin/rules/nope", json={"enabled": False, **AUTHOR})).status_code == 404

        shown = (await http.get("/admin/rules/big")).json()
        trail = [(h["change"], h["author"], h["detail"]["expression"]) for h in reversed(shown["history"])]
        assert trail == [
            ("created", "ana", "amount >= 100.0"),
            ("updated", "bob", "amount >= 50.0"),
            ("disabled", "carl", "amount >= 50.0"),
        ]


async def test_an_admin_route_takes_an_admin_key(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": SecretStr("client"), "admin_keys": SecretStr("admin")})
    async with running(keyed) as (_, http):
        assert (await http.get("/admin/rules", headers={"x-api-key": "client"})).status_code == 401
        assert (await http.get("/admin/rules", headers={"x-api-key": "admin"})).status_code == 200


async def test_lists_then_rules_then_model_with_reasons_in_answer_event_and_row(
    settings: Settings, db: asyncpg.Connection
) -> None:
    async with running(settings) as (app, http):
        watcher = app.state.services.policy
        for name, kind, action in (("vip", "user", "allow"), ("stolen", "device", "deny"), ("risky", "ip", "none")):
            response = await http.post("/admin/lists", json={"name": name, "kind": kind, "action": action, **AUTHOR})
            assert response.status_code == 201, response.text
        entries = {"entries": [{"value": "203.0.113.0/24", "reason": "proxy farm"}], **AUTHOR}
        assert (await http.post("/admin/lists/risky/entries", json=entries)).json() == {"added": 1}
        bad = await http.post("/admin/lists/risky/entries", json={"entries": [{"value": "not-an-ip"}], **AUTHOR})
        assert bad.status_code == 422
        assert "entry 1" in bad.json()["detail"]
        rule = {"name": "risky_ip", "when": '"risky" in lists', "action": "review", **AUTHOR}
        assert (await http.post("/admin/rules", json=rule)).status_code == 201
        for listed, value in (("vip", "u-vip"), ("stolen", "d-stolen")):
            entry = {"entries": [{"value": value, "reason": "case 42"}], **AUTHOR}
            assert (await http.post(f"/admin/lists/{listed}/entries", json=entry)).status_code == 200

        async def applied() -> bool:
            return len(watcher.policy.rules) == 1 and len(watcher.policy.lists["stolen"]) == 1

        await wait_until(applied, deadline_s=2, what="the policy applied")

        device = {"device_id": "d-stolen", "device_type": "mobile"}
        vip = await _decision(http, user_id="u-vip", device_info=device, ip_address="203.0.113.9")
        stolen = await _decision(http, user_id="u-x", device_info=device, transaction_id="t2")
        risky = await _decision(http, user_id="u-y", ip_address="203.0.113.9", transaction_id="t3")
        plain = await _decision(http, user_id="u-z", ip_address="198.51.100.1", transaction_id="t4")
    assert (vip["decision"], vip["decided_by"], vip["reasons"][0]["list_name"]) == ("approve", "allow_list", "vip")
    assert (stolen["decision"], stolen["decided_by"]) == ("decline", "deny_list")
    assert stolen["fraud_classifier"]["prediction"] == 1
    assert "device d-stolen is on the deny list stolen: case 42" in stolen["reasons"][0]["text"]
    assert (risky["decision"], risky["decided_by"], risky["reasons"][0]["rule"]) == ("review", "rule", "risky_ip")
    assert plain["decided_by"] == "model"
    for answer in (vip, stolen, risky, plain):  # the model's view is always given, last
        assert answer["reasons"][-1]["source"] == "model"
        assert answer["reasons"][-1]["fraud_proba"] == answer["fraud_classifier"]["pred_proba"]

    events = {e.event_id: e for e in (ScoredEvent.model_validate_json(r["Data"]) for r in await read_stream(settings))}
    assert events[uuid.UUID(stolen["event_id"])].decided_by == "deny_list"
    async with worker(settings, "w1"):

        async def all_stored() -> bool:
            return int(await db.fetchval("SELECT count(*) FROM fraud_predictions")) == 4

        await wait_until(all_stored, what="4 rows")
    row = await db.fetchrow(
        "SELECT decision, decided_by, reasons FROM fraud_predictions WHERE event_id = $1", uuid.UUID(risky["event_id"])
    )
    assert row is not None
    assert (row["decision"], row["decided_by"]) == ("review", "rule")
    assert orjson.loads(row["reasons"])[0]["rule"] == "risky_ip"


def _cli(settings: Settings, *args: str) -> Any:
    env = {"DATABASE_URL": settings.static_database_url or "", "FRAUDFLOW_LOG_FORMAT": "console"}
    return CliRunner().invoke(cli, list(args), env=env)


def test_two_api_processes_apply_a_change_within_2_s_of_its_commit(settings: Settings, tmp_path: Path) -> None:
    url = settings.static_database_url or ""
    with (
        uvicorn(settings, tmp_path / "a.log", DATABASE_URL=url) as (_, first),
        uvicorn(settings, tmp_path / "b.log", DATABASE_URL=url) as (_, second),
    ):
        payment = body(user_id="u-hot", device_info={"device_id": "d-hot"}, transaction_id="t-hot")
        for api in (first, second):
            assert httpx.post(api + "/predict", json=payment, timeout=10).json()["decided_by"] == "model"
        assert _cli(settings, "lists", "create", "hot", "--kind", "device", "--action", "deny").exit_code == 0
        result = _cli(settings, "lists", "add", "hot", "d-hot", "--reason", "seen this morning", "--author", "ana")
        assert result.exit_code == 0, result.output
        committed = time.monotonic()
        for api in (first, second):
            while (answer := httpx.post(api + "/predict", json=payment, timeout=10).json())[
                "decided_by"
            ] != "deny_list":
                assert time.monotonic() - committed < 2.0, f"{api} did not apply the change within 2 s"
            assert answer["decision"] == "decline"
        result = _cli(
            settings,
            "rules",
            "add",
            "night",
            "--when",
            "hour_of_day < 6.0 && amount > 1000.0",
            "--action",
            "decline",
            "--author",
            "ana",
        )
        assert result.exit_code == 0, result.output
        committed = time.monotonic()
        for api in (first, second):
            while httpx.get(api + "/readyz", timeout=5).json()["policy"]["rules"] != 1:
                assert time.monotonic() - committed < 2.0, f"{api} did not apply the rule within 2 s"


async def test_without_the_database_the_last_policy_applies_and_readyz_says_so(
    settings: Settings, pg_server: Any
) -> None:
    parts = urlsplit(settings.static_database_url or "")
    relay = TcpRelay(parts.port or 5432)
    await relay.start()
    through = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    relayed = settings.model_copy(update={"database_url": SecretStr(through)})
    async with running(relayed) as (app, http):
        watcher = app.state.services.policy
        await http.post("/admin/lists", json={"name": "deny_users", "kind": "user", "action": "deny", **AUTHOR})
        await http.post("/admin/lists/deny_users/entries", json={"entries": [{"value": "u-bad"}], **AUTHOR})

        async def applied() -> bool:
            return "deny_users" in watcher.policy.lists and len(watcher.policy.lists["deny_users"]) == 1

        await wait_until(applied, deadline_s=2, what="the list applied")
        assert (await http.get("/readyz")).json()["policy"] == {
            "rules": 0,
            "lists": 1,
            "current": True,
            "problem": None,
        }

        await relay.cut()

        async def stale() -> bool:
            return not (await http.get("/readyz")).json()["policy"]["current"]

        await wait_until(stale, deadline_s=10, what="readyz to report stale rules")
        ready = (await http.get("/readyz")).json()
        assert "cannot be refreshed" in ready["policy"]["problem"]
        assert ready["status"] == "ready"  # the last policy applies: no reason to take traffic away
        assert "fraudflow_policy_stale 1.0" in (await http.get("/metrics")).text
        answer = await _decision(http, user_id="u-bad")
        assert (answer["decision"], answer["decided_by"]) == ("decline", "deny_list")

        await relay.start()

        async def current() -> bool:
            return bool((await http.get("/readyz")).json()["policy"]["current"])

        await wait_until(current, deadline_s=15, what="the policy current again")
    await relay.cut()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rules", "add", "r", "--when", "amount >", "--action", "review"], "syntax error"),
        (["rules", "add", "r", "--when", "amount > 1.0", "--action", "block"], "one of decline, review, allow"),
        (["rules", "enable", "nope"], "no rule named nope"),
        (["lists", "add", "nope", "x"], "no list named nope"),
    ],
)
def test_cli_errors_are_one_line(settings: Settings, args: list[str], message: str) -> None:
    result = _cli(settings, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


async def _stored_rows(db: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
               anomaly_score, event_id, decision, model_version, amount, features, received_at, device_id,
               behaviour, decided_by, reasons)
               VALUES ($1, $2, 'test', 0, $3, 0.1, $4, $5, 'v', $6, $7, $1, $8, $9::jsonb, $10, $11::jsonb)""",
            row["at"],
            row["user"],
            row["proba"],
            row["event_id"],
            row["decision"],
            row["amount"],
            [0.0] * 30,
            row.get("device"),
            orjson.dumps(row["behaviour"]).decode(),
            row.get("decided_by"),
            orjson.dumps(row.get("reasons")).decode() if row.get("reasons") else None,
        )


async def test_a_backtest_matches_a_hand_count(db: asyncpg.Connection) -> None:
    """30 stored transactions over 3 days: the rule `user_count_1h >= 5.0 && amount < 2.0` counted by hand."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for i in range(30):
        count, amount = float(i % 8), 1.0 if i % 3 else 5.0
        decision = ("approve", "review", "decline")[i % 5 % 3]
        row: dict[str, Any] = {
            "at": start + timedelta(hours=i * 2.5),
            "user": f"u{i % 4}",
            "proba": 0.5,
            "event_id": uuid.uuid4(),
            "decision": decision,
            "amount": amount,
            "behaviour": {"user_count_1h": None if i == 7 else count},  # one unknown: not evaluated
        }
        if i == 13:  # decided by a deny list: a rule cannot change it
            row |= {"decided_by": "deny_list", "decision": "decline"}
        rows.append(row)
    await _stored_rows(db, rows)

    matched = [r for r in rows if r["behaviour"]["user_count_1h"] is not None]
    matched = [r for r in matched if r["behaviour"]["user_count_1h"] >= 5 and r["amount"] < 2]
    changed = [r for r in matched if r["decision"] != "review" and r.get("decided_by") != "deny_list"]
    by_day: dict[str, list[int]] = {}
    for r in rows:
        day = by_day.setdefault(r["at"].date().isoformat(), [0, 0])
        day[0] += 1
        day[1] += r in matched

    result = await backtest(db, "user_count_1h >= 5.0 && amount < 2.0", "review", start, start + timedelta(days=4))
    assert (result["transactions"], result["matched"], result["unevaluated"]) == (30, len(matched), 1)
    assert sum(result["would_change"].values()) == len(changed)
    expected: dict[str, int] = {}
    for r in changed:
        expected[f"{r['decision']} -> review"] = expected.get(f"{r['decision']} -> review", 0) + 1
    assert result["would_change"] == expected
    assert [(d["day"], d["transactions"], d["matched"]) for d in result["by_day"]] == [
        (day, t, m) for day, (t, m) in sorted(by_day.items())
    ]
    assert set(result["examples"]) == {str(r["event_id"]) for r in changed}


async def test_a_rule_failing_at_run_time_is_counted_and_skipped_never_a_5xx(settings: Settings) -> None:
    async with running(settings) as (app, http):
        rules = (
            ("divides", "int(amount) / int(fraud_proba) > 1"),  # fraud_proba < 1: a division by zero
            ("far", "user_km_from_previous > 500.0"),  # no feature store here: the distance is unknown
        )
        for name, when in rules:
            rule = {"name": name, "when": when, "action": "decline", **AUTHOR}
            assert (await http.post("/admin/rules", json=rule)).status_code == 201

        async def applied() -> bool:
            return len(app.state.services.policy.policy.rules) == 2

        await wait_until(applied, deadline_s=2, what="the rules applied")
        answers = [await _decision(http, transaction_id=f"t{i}") for i in range(3)]
        metrics = (await http.get("/metrics")).text
    assert all(a["decided_by"] == "model" for a in answers)
    assert 'fraudflow_rule_failures_total{rule="divides"} 3.0' in metrics
    assert 'fraudflow_rule_unevaluated_total{rule="far"} 3.0' in metrics


def test_lists_import_a_csv_all_or_none_and_rules_test_a_stored_transaction(settings: Settings, tmp_path: Path) -> None:
    assert _cli(settings, "lists", "create", "bad_ips", "--kind", "ip", "--action", "deny").exit_code == 0
    good = tmp_path / "good.csv"
    good.write_text("\ufeffValue,Reason,expires_at\n203.0.113.0/24,proxy farm,2099-01-01T00:00:00\n10.0.0.7,,\n\n")
    result = _cli(settings, "lists", "import", "bad_ips", str(good), "--author", "ana")
    assert result.exit_code == 0, result.output
    assert "2 entries imported into bad_ips" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("value\n198.51.100.1\nnot-an-ip\n")
    result = _cli(settings, "lists", "import", "bad_ips", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3: list bad_ips, entry 2: 'not-an-ip' is not an IP address" in " ".join(result.output.split())
    assert "nothing was added" in result.output
    shown = orjson.loads(_cli(settings, "lists", "show", "bad_ips").output)
    assert sorted(e["value"] for e in shown["entries"]) == ["10.0.0.7", "203.0.113.0/24"]
    assert [h["change"] for h in shown["history"]] == ["entries added", "created"]

    result = _cli(settings, "rules", "test", '"bad_ips" in lists && amount > 10.0', "--set", "amount=12.5")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("false")  # no IP given: on no list
    result = _cli(settings, "rules", "test", "user_count_1h >= 3.0", "--set", "user_count_1h=null")
    assert result.output.startswith("unknown (a field it reads is null)")
    result = _cli(settings, "rules", "test", "amount > 1.0", "--event", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert "no stored transaction with event id" in result.output


async def test_each_batch_item_has_its_reasons(settings: Settings) -> None:
    async with running(settings) as (_, http):
        items = [body(user_id=f"u{i}", transaction_id=f"b{i}") for i in range(3)]
        response = await http.post("/predict/batch", json={"transactions": items})
    assert response.status_code == 200, response.text
    for item in response.json()["results"]:
        result = item["result"]
        assert result["decided_by"] == "model"
        assert result["reasons"][0]["decision"] == result["decision"]


async def test_labels_latest_wins_unknown_ids_are_reported_and_backtests_score_against_them(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {
            "at": start + timedelta(hours=i),
            "user": f"u{i}",
            "proba": 0.5,
            "event_id": uuid.uuid4(),
            "decision": "approve",
            "amount": 1.0,
            "behaviour": {"user_count_1h": float(i % 4)},
        }
        for i in range(8)
    ]
    await _stored_rows(db, rows)
    ids = [str(r["event_id"]) for r in rows]
    async with running(settings) as (_, http):
        first = {"event_id": ids[0], "label": "legitimate", "known_at": "2026-11-02T00:00:00Z"}
        later = {"event_id": ids[0], "label": "fraud", "known_at": "2026-11-20T00:00:00Z"}
        stranger = {"event_id": str(uuid.uuid4()), "label": "fraud"}
        batch = {"labels": [later, first, stranger], "author": "processor"}
        answer = (await http.post("/labels", json=batch)).json()
        bad = await http.post("/labels", json={"labels": [{"event_id": "nope", "label": "fraud"}], "author": "p"})
    assert answer == {"stored": 2, "unknown_event_ids": [stranger["event_id"]]}
    assert bad.status_code == 422
    latest = await db.fetchrow("SELECT label, source FROM latest_labels WHERE event_id = $1", rows[0]["event_id"])
    assert latest is not None
    assert (latest["label"], latest["source"]) == ("fraud", "chargeback")  # the later known wins, in any order

    csv_file = tmp_path / "chargebacks.csv"
    csv_file.write_text(
        f"event_id,label,note\n{ids[1]},legitimate,\n{ids[3]},fraud,card stolen\n{uuid.uuid4()},fraud,\n"
    )
    # The CLI runs its own event loop: off this test's.
    result = await asyncio.to_thread(_cli, settings, "labels", "import", str(csv_file), "--author", "ana")
    assert result.exit_code == 0, result.output
    assert "2 labels recorded" in result.output
    assert "1 event ids match no stored transaction" in result.output
    broken = tmp_path / "broken.csv"
    broken.write_text(f"event_id,label\n{ids[2]},maybe\n")
    result = await asyncio.to_thread(_cli, settings, "labels", "import", str(broken))
    assert result.exit_code == 1
    assert f"{broken}:2: label 'maybe' is not fraud or legitimate" in " ".join(result.output.split())

    # user_count_1h >= 3 matches rows 3 and 7; labelled: 0 fraud, 1 legitimate, 3 fraud.
    result = await backtest(db, "user_count_1h >= 3.0", "review", start, start + timedelta(days=1))
    assert result["labels"] == {
        "labelled": 3,
        "frauds": 2,
        "matched_frauds": 1,
        "matched_legitimate": 0,
        "precision": 1.0,
        "recall": 0.5,
    }
