"""The dashboard in a real headless Chromium, and its access control."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from werkzeug.serving import make_server

from dash_app.app import create_app
from dash_app.callbacks import health
from dash_app.figures import NO_DATA
from fraudflow.config import Environment, Settings, SettingsError, load_settings
from fraudflow.manifest import Manifest
from fraudflow.net import free_port
from fraudflow.registry import default_models_dir

if TYPE_CHECKING:
    from selenium.webdriver import Chrome as WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _row(i: int) -> tuple[str, float]:
    if i < 30:
        return "review", 0.30 + i * 0.01
    if i < 38:
        return "approve", 0.02
    return "decline", 0.90 + (i - 38) * 0.05


async def _insert_row(conn: asyncpg.Connection, user: str, decision: str, proba: float, received: datetime) -> None:
    await conn.execute(
        """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
               anomaly_score, device_type, country, city, latitude, longitude, event_id, decision, model_version,
               amount, features, received_at, processed_at, device_id, behaviour, features_degraded)
           VALUES ($1, $2, 'web', $3, $4, 0.5, 'mobile', 'FR', 'Paris', 48.86, 2.35, $5, $6, 'v1', 42, $7, $1, $8,
                   'phone-' || $2, '{"user_count_1h": 3, "user_new_device": 1, "user_km_from_previous": null}',
                   false)""",
        received,
        user,
        int(decision == "decline"),
        proba,
        uuid.uuid4(),
        decision,
        [0.5] * 30,
        received + timedelta(milliseconds=300),
    )


@pytest.fixture
async def forty_rows(db: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    for i in range(40):
        decision, proba = _row(i)
        await _insert_row(db, f"user-{i:02d}", decision, proba, now - timedelta(minutes=i, seconds=5))


async def _insert_flagged(database: str, user: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await _insert_row(conn, user, "review", 0.45, datetime.now(UTC))
    finally:
        await conn.close()


@pytest.fixture
def dashboard(settings: Settings, forty_rows: None) -> Iterator[str]:
    assert settings.static_database_url
    app = create_app(settings.model_copy(update={"dashboard_refresh_s": 2.0}), settings.static_database_url)
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/"
    server.shutdown()
    thread.join(10)


def test_page_shows_data_filters_pages_and_details(dashboard: str, browser: WebDriver, settings: Settings) -> None:
    database = settings.static_database_url
    assert database
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    driver.get(dashboard)
    wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), "40"))
    assert driver.find_element(By.ID, "kpi-flagged").text == "32"  # as many as the flagged table lists
    assert driver.find_element(By.ID, "kpi-review-decline").text == "30 / 2"
    assert driver.find_element(By.ID, "kpi-models").text == "v1"
    # The served model decides by expected cost: the histogram says so rather than draw a cut that is not one.
    assert Manifest.read(default_models_dir()).policy is not None
    wait.until(ec.text_to_be_present_in_element((By.ID, "g-proba"), "decided by expected cost"))
    # Decision rates against the card's, and each model version's figures.
    wait.until(ec.text_to_be_present_in_element((By.ID, "g-rates"), "card: "))
    wait.until(ec.text_to_be_present_in_element((By.ID, "models"), "v1"))
    assert "80.00%" in driver.find_element(By.ID, "models").text  # 32 of 40 flagged
    assert "Paris (5.0% declined)" in driver.find_element(By.ID, "g-city").text  # the reference's rate by city
    _assert_map_drawn_offline(driver, dashboard, "g-map")

    def first_user() -> str:
        return str(driver.find_element(By.CSS_SELECTOR, "#flagged td[data-dash-column='user_id']").text)

    wait.until(lambda _: first_user() == "user-00")  # newest first
    driver.find_element(By.CSS_SELECTOR, "#flagged .next-page").click()
    wait.until(lambda _: first_user() == "user-15")  # server-side paging: the second page of 15
    driver.find_element(By.CSS_SELECTOR, "#flagged td[data-dash-column='user_id']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail"), "features (Time, V1..V28, Amount)"))
    assert "user_id: user-15" in driver.find_element(By.ID, "detail").text

    # A newer flagged transaction arrives: at the next refresh every row moves down one place. The highlight
    # and the detail stay on the transaction that was chosen, not on its old position.
    asyncio.run(_insert_flagged(database, "user-new"))
    wait.until(lambda _: first_user() == "user-14")
    highlighted = driver.find_element(By.CSS_SELECTOR, "#flagged td.focused, #flagged td.cell--selected")
    row = highlighted.find_element(By.XPATH, "..")
    assert row.find_element(By.CSS_SELECTOR, "td[data-dash-column='user_id']").text == "user-15"
    assert "user_id: user-15" in driver.find_element(By.ID, "detail").text

    proba = driver.find_element(By.ID, "f-min-proba")
    proba.send_keys(Keys.CONTROL, "a")
    proba.send_keys("0.5", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), "12"))
    assert driver.find_element(By.ID, "banner").is_displayed() is False

    # A custom range that ends before it starts is said, not silently replaced by the last hour.
    driver.find_element(By.ID, "range").click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='Custom range']"))).click()
    driver.find_element(By.ID, "custom-start").send_keys("2026-12-02 10:00", Keys.ENTER)
    driver.find_element(By.ID, "custom-end").send_keys("2026-12-02 09:00", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, "banner"), "the end is not after the start"))
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [entry for entry in log if entry["level"] == "SEVERE"]
    assert errors == []


def _assert_map_drawn_offline(driver: WebDriver, origin: str, graph: str) -> None:
    """The map has its country outlines, and the page fetched nothing from anywhere but the dashboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    outlines = f"#{graph} .geo .countries path"
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, outlines)) > 0)
    assert driver.find_elements(By.CSS_SELECTOR, f"#{graph} .scattergeo path.point")
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any("topojson/world_110m.json" in url for url in fetched)
    assert [url for url in fetched if not url.startswith(origin)] == []


def test_phone_width_has_no_horizontal_page_scroll_and_empty_charts_say_so(dashboard: str, browser: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(390, 900)
    try:
        browser.get(dashboard)
        wait = WebDriverWait(browser, 30)
        wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), "40"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#flagged td"))
        widths = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"page {widths[0]} px wide in a {widths[1]} px window"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
        # A filter nothing matches: every chart says there is no data rather than drawing empty axes.
        browser.find_element(By.ID, "f-min-proba").send_keys("\b\b\b\b1\n")
        wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), "0"))
        wait.until(lambda d: len(d.find_elements(By.XPATH, f"//*[text()='{NO_DATA}']")) >= 7)
    finally:
        browser.set_window_size(1400, 2200)


def test_the_view_is_kept_in_the_url(dashboard: str, browser: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(dashboard + "?range=24h&min_proba=0.5&decision=review")  # a link someone shared
    wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-transactions"), "10"))
    assert browser.find_element(By.ID, "f-min-proba").get_attribute("value") == "0.5"
    assert "Last 24 hours" in browser.find_element(By.ID, "range").text
    proba = browser.find_element(By.ID, "f-min-proba")
    proba.send_keys(Keys.CONTROL, "a")
    proba.send_keys("0.55", Keys.ENTER)
    wait.until(lambda d: "min_proba=0.55" in d.current_url)
    assert "decision=review" in browser.current_url
    assert "range=24h" in browser.current_url


async def _event_of(database: str, user: str) -> str:
    conn = await asyncpg.connect(database)
    try:
        return str(await conn.fetchval("SELECT event_id FROM fraud_predictions WHERE user_id = $1", user))
    finally:
        await conn.close()


def test_transaction_and_user_pages_have_their_own_urls(dashboard: str, browser: WebDriver, settings: Settings) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert settings.static_database_url
    event_id = asyncio.run(_event_of(settings.static_database_url, "user-15"))
    wait = WebDriverWait(browser, 30)
    browser.get(dashboard + f"tx/{event_id}")  # a shared link, opened cold
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), f"Transaction {event_id}"))
    page = browser.find_element(By.ID, "subject").text
    assert "42.00" in page  # the amount, to the cent
    assert "Fraud probability 0.4500" in page  # scored by "v1": not the served model, so no cuts are claimed
    # Its behaviour features in words, with what each means.
    assert "The user's transactions in the last hour, this one included 3" in page
    assert "1 when the user has not used this device in the last 7 days, else 0 yes" in page
    assert "Km from the user's previous located transaction (7 days) unknown" in page
    browser.find_element(By.LINK_TEXT, "phone-user-15").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), "Users of this device"))
    assert "Users of this device" in browser.find_element(By.ID, "subject").text
    browser.back()
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), f"Transaction {event_id}"))
    assert browser.find_element(By.ID, "monitor").is_displayed() is False
    browser.find_element(By.LINK_TEXT, "user-15").click()
    # Not "User user-15": the transaction page has that line too. Only the user's page lists its transactions.
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), "Recent transactions"))
    assert browser.current_url.endswith("/user/user-15")
    assert "Flagged among them 1" in browser.find_element(By.ID, "subject").text
    _assert_map_drawn_offline(browser, dashboard, "entity-map")
    assert browser.find_elements(By.CSS_SELECTOR, "#entity-timeline .scatterlayer path.point")
    # Search by event id from any page.
    browser.find_element(By.ID, "search").send_keys(event_id, Keys.ENTER)
    wait.until(lambda d: d.current_url.endswith(f"/tx/{event_id}"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), f"Transaction {event_id}"))
    browser.get(dashboard + "tx/not-an-id")
    wait.until(ec.text_to_be_present_in_element((By.ID, "subject"), "No stored transaction has the event id"))


def test_the_flagged_table_downloads_as_csv(settings: Settings, forty_rows: None) -> None:
    assert settings.static_database_url
    client = create_app(settings, settings.static_database_url).server.test_client()
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    callback = next(
        c for c in client.get("/_dash-dependencies", environ_base=loopback).get_json() if c["output"] == "download.data"
    )
    values = {"range": "1h", "f-min-proba": 0.5, "flagged": [{"column_id": "fraud_proba", "direction": "desc"}]}
    payload = {
        "output": "download.data",
        "outputs": {"id": "download", "property": "data"},
        "inputs": [{**callback["inputs"][0], "value": 1}],
        "state": [{**state, "value": values.get(state["id"])} for state in callback["state"]],
        "changedPropIds": ["export.n_clicks"],
    }
    response = client.post("/_dash-update-component", json=payload, environ_base=loopback)
    assert response.status_code == 200, response.text[:300]
    download = response.get_json()["response"]["download"]["data"]
    rows = list(csv.DictReader(io.StringIO(download["content"])))
    assert download["filename"].startswith("flagged-")
    assert download["filename"].endswith(".csv")
    assert len(rows) == 12  # the filter's rows, not one page of 15
    probas = [float(r["fraud_proba"]) for r in rows]
    assert probas == sorted(probas, reverse=True)
    assert {"received_at", "user_id", "amount", "decision", "event_id"} <= set(rows[0])


def _lease(owner: str | None, renewed_s_ago: float, lag_ms: int = 0) -> dict[str, Any]:
    return {"owner": owner, "renewed_s_ago": renewed_s_ago, "millis_behind_latest": lag_ms}


@pytest.mark.parametrize(
    ("leases", "newest_s", "level", "words"),
    [
        ([_lease("w1", 2), _lease("w2", 3, 1500)], 1.0, "ok", "OK: newest row 1 s ago; consumer lag 1.5 s"),
        # A frozen worker still shows its last lag (0): its leases are what say it is gone.
        ([_lease("w1", 2), _lease("w2", 77)], 70.0, "failure", "FAILING: 1 shard(s) not consumed"),
        ([_lease(None, 300), _lease(None, 300)], 400.0, "failure", "FAILING: 2 shard(s) not consumed"),
        ([], None, "failure", "no consumer has started"),
        ([_lease("w1", 2)], 600.0, "warning", "quiet: newest row 10 min ago"),
    ],
)
def test_pipeline_health_is_judged_from_leases_and_the_newest_row(
    leases: list[dict[str, Any]], newest_s: float | None, level: str, words: str
) -> None:
    text, judged = health(leases, newest_s)
    assert judged == level
    assert text.startswith(words) or words in text


async def _freeze_a_consumer(database: str) -> None:
    """A lease whose worker stopped renewing 77 s ago, as a frozen consumer leaves it."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            """INSERT INTO kinesis_leases (application, stream, shard_id, owner, millis_behind_latest, updated_at)
               VALUES ('fraudflow', 's', 'shardId-000000000000', 'frozen-worker', 0, now() - interval '77 seconds')"""
        )
    finally:
        await conn.close()


def test_a_frozen_consumer_is_shown_as_failing(dashboard: str, browser: WebDriver, settings: Settings) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert settings.static_database_url
    asyncio.run(_freeze_a_consumer(settings.static_database_url))
    browser.get(dashboard)
    wait = WebDriverWait(browser, 30)
    wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-health"), "FAILING: 1 shard(s) not consumed"))
    colour = browser.find_element(By.ID, "kpi-health").value_of_css_property("color")
    assert colour == "rgba(209, 36, 47, 1)"  # #d1242f


def test_a_database_outage_is_said_in_words_and_nothing_pretends_to_be_current(browser: WebDriver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    down = f"postgresql://fraudflow@127.0.0.1:{free_port()}/fraudflow"  # nothing listens there
    app = create_app(Settings(_env_file=None, FRAUDFLOW_DASHBOARD_REFRESH_S=1.0), down)
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 30)
        wait.until(ec.text_to_be_present_in_element((By.ID, "banner"), "PostgreSQL refuses connections"))
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "Errno" not in page  # no Python exception shown to the analyst
        assert "Error" not in page
        assert browser.find_element(By.ID, "refreshed").text == "no data yet"
        assert "opacity: 0.45" in (browser.find_element(By.ID, "figures").get_attribute("style") or "")
    finally:
        server.shutdown()
        thread.join(10)


def test_basic_auth(settings: Settings) -> None:
    assert settings.static_database_url
    keyed = settings.model_copy(update={"dashboard_users": SecretStr("ana:s3cret")})
    client = create_app(keyed, settings.static_database_url).server.test_client()
    assert client.get("/").status_code == 401
    assert client.get("/").headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"ana:nope").decode()
    assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = base64.b64encode(b"ana:s3cret").decode()
    assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
    # The load balancer's and the container's health checks carry no credentials; /healthz reveals nothing.
    health = client.get("/healthz", environ_base={"REMOTE_ADDR": "10.0.3.7"})
    assert (health.status_code, health.text) == (200, "ok")
    assert client.get("/healthz/../", environ_base={"REMOTE_ADDR": "10.0.3.7"}).status_code == 401


def test_without_users_only_loopback_is_served(settings: Settings) -> None:
    assert settings.static_database_url
    client = create_app(settings, settings.static_database_url).server.test_client()
    assert client.get("/", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 403


def test_without_users_a_request_through_a_local_proxy_is_not_local(settings: Settings) -> None:
    assert settings.static_database_url
    client = create_app(settings, settings.static_database_url).server.test_client()
    proxied = {"REMOTE_ADDR": "127.0.0.1"}
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = client.get("/", environ_base=proxied, headers={header: "for=203.0.113.5"})
        assert response.status_code == 403, header


def test_a_password_with_a_comma_is_never_cut(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="for a password with a comma use the JSON form") as refused:
        load_settings(_env_file=None, FRAUDFLOW_DASHBOARD_USERS="ana:pa,ss")
    assert "pa,ss" not in str(refused.value)
    assert settings.static_database_url
    keyed = settings.model_copy(update={"dashboard_users": SecretStr('{"ana": "pa,ss:word"}')})
    client = create_app(keyed, settings.static_database_url).server.test_client()
    for password, status in ((b"pa,ss:word", 200), (b"pa", 401)):
        header = {"Authorization": "Basic " + base64.b64encode(b"ana:" + password).decode()}
        assert client.get("/", headers=header).status_code == status


HOSTILE = [-5, 1e19, "abc", [{"column_id": ["x"], "direction": 3}], {"row": "0"}, None, True, [None, 7]]


def test_callbacks_answer_hostile_values_without_a_server_error(settings: Settings, forty_rows: None) -> None:
    """A browser can send any JSON as a callback's input: no value may turn into an HTML 500."""
    assert settings.static_database_url
    client = create_app(settings, settings.static_database_url).server.test_client()
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    dependencies = client.get("/_dash-dependencies", environ_base=loopback).get_json()
    for callback in dependencies:
        for target in callback["inputs"] + callback["state"]:
            for value in HOSTILE:
                inputs = [{**i, "value": value if i == target else None} for i in callback["inputs"]]
                state = [{**i, "value": value if i == target else None} for i in callback["state"]]
                payload = {
                    "output": callback["output"],
                    "outputs": _outputs(callback["output"]),
                    "inputs": inputs,
                    "state": state,
                    "changedPropIds": [f"{target['id']}.{target['property']}"],
                }
                response = client.post("/_dash-update-component", json=payload, environ_base=loopback)
                assert response.status_code in {200, 204}, (target, value, response.text[:300])
    for row_id in ("not-an-id", 7, None):
        payload = {
            "output": "selected-event.data",
            "outputs": {"id": "selected-event", "property": "data"},
            "inputs": [{"id": "flagged", "property": "active_cell", "value": {"row": 0, "row_id": row_id}}],
            "changedPropIds": ["flagged.active_cell"],
        }
        response = client.post("/_dash-update-component", json=payload, environ_base=loopback)
        assert response.status_code in {200, 204}, row_id


def _outputs(spec: str) -> list[dict[str, str]] | dict[str, str]:
    parts = [p for p in spec.strip(".").split("...") if p]
    outputs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in parts]
    return outputs if spec.startswith("..") else outputs[0]


def test_scripts_are_served_compressed(settings: Settings) -> None:
    assert settings.static_database_url
    app = create_app(settings, settings.static_database_url)
    client = app.server.test_client()
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    page = client.get("/", environ_base=loopback).text
    scripts = re.findall(r'src="(/_dash-component-suites/[^"]*)"', page)
    # plotly.js itself (4.8 MB) is loaded when the first chart renders.
    scripts += [f"/_dash-component-suites/plotly/{path}" for path in sorted(app.registered_paths["plotly"])]
    for script in scripts:
        plain = client.get(script, environ_base=loopback)
        assert plain.status_code == 200, script
        compressed = client.get(script, environ_base=loopback, headers={"Accept-Encoding": "gzip"})
        assert compressed.headers["Content-Encoding"] == "gzip", script
        assert len(compressed.data) < len(plain.data) / 2, script


def test_production_refuses_to_start_without_users(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="FRAUDFLOW_DASHBOARD_USERS"):
        create_app(settings.model_copy(update={"env": Environment.PRODUCTION}), "postgresql://unused/db")


def test_wsgi_entry_point_serves_the_app(settings: Settings) -> None:
    # `dash_app.wsgi:server` is what a WSGI server (gunicorn, uwsgi) loads: settings from the environment.
    script = (
        "from dash_app.wsgi import server\n"
        "client = server.test_client()\n"
        "print(client.get('/healthz').status_code, client.get('/', environ_base={'REMOTE_ADDR': '127.0.0.1'})"
        ".status_code)\n"
    )
    env = {**os.environ, "DATABASE_URL": settings.static_database_url or "", "FRAUDFLOW_LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200"]
    bad = subprocess.run(
        [sys.executable, "-c", "import dash_app.wsgi"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "FRAUDFLOW_SHARDS": "0"},
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid setting FRAUDFLOW_SHARDS")


async def test_the_dashboard_command_serves_under_gunicorn_and_stops_cleanly(settings: Settings) -> None:
    """What the image runs: worker processes behind gunicorn, connections kept longer than a load balancer's
    idle timeout, a graceful stop on SIGTERM."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.static_database_url or "", "FRAUDFLOW_LOG_LEVEL": "WARNING"}
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "fraudflow.cli", "dashboard", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                try:
                    health = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert asyncio.get_running_loop().time() < deadline, "the dashboard did not start"
                    await asyncio.sleep(0.2)
            page = await http.get("/")
        assert health.status_code == 200
        assert page.status_code == 200
        assert health.headers["server"].startswith("gunicorn")
        assert health.headers.get("connection", "keep-alive").lower() != "close"  # kept for the next request
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, output.decode()[-2000:]


def test_a_transaction_shows_the_cuts_of_the_model_that_scored_it() -> None:
    from dash_app.figures import ServedModel
    from dash_app.pages import _against_cuts

    model = ServedModel("abc", {"review": 0.0333, "decline": 0.785}, {})
    assert _against_cuts(0.5, "abc", model) == "0.5000 (review from 0.0333, decline from 0.785)"
    assert _against_cuts(0.5, "older", model) == "0.5000"


async def _give_reasons(database: str, user: str) -> str:
    """Reasons as the API writes them: a rule decided, the model's view with its top contributions."""
    reasons = [
        {
            "source": "rule",
            "rule": "card_testing",
            "version": 2,
            "action": "review",
            "text": "rule card_testing (v2, review): many small payments",
        },
        {
            "source": "model",
            "decision": "approve",
            "fraud_proba": 0.45,
            "text": "model: fraud probability 0.450, expected loss 25.65 above a review's cost 5.00",
            "contributions": [
                {
                    "feature": "user_count_1h",
                    "value": 9.0,
                    "contribution": 1.25,
                    "text": "9 payments by the user in the last hour; usual: 1",
                },
            ],
        },
    ]
    conn = await asyncpg.connect(database)
    try:
        return str(
            await conn.fetchval(
                "UPDATE fraud_predictions SET decided_by = 'rule', reasons = $2::jsonb WHERE user_id = $1 "
                "RETURNING event_id",
                user,
                json.dumps(reasons),
            )
        )
    finally:
        await conn.close()


def _own_page(browser: WebDriver, url: str, element: str, text: str) -> WebDriverWait[WebDriver]:
    """Open one of the dashboard's own pages and wait for `text` in `element`; the monitor is hidden there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(url)
    wait.until(ec.text_to_be_present_in_element((By.ID, element), text))
    assert browser.find_element(By.ID, "monitor").is_displayed() is False
    return wait


def test_a_transaction_page_says_why_in_words(dashboard: str, browser: WebDriver, settings: Settings) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert settings.static_database_url
    event_id = asyncio.run(_give_reasons(settings.static_database_url, "user-07"))
    browser.get(dashboard + f"tx/{event_id}")
    WebDriverWait(browser, 30).until(ec.text_to_be_present_in_element((By.ID, "subject"), "Why"))
    page = browser.find_element(By.ID, "subject").text
    assert "Decided by a rule" in page
    assert "rule card_testing (v2, review): many small payments (rule card_testing, version 2)" in page
    assert "9 payments by the user in the last hour; usual: 1 (+1.25 log-odds)" in page


def test_rules_and_lists_are_managed_and_backtested_on_their_page(
    dashboard: str, browser: WebDriver, settings: Settings
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    assert settings.static_database_url
    asyncio.run(_make_list(settings.static_database_url))
    wait = _own_page(browser, dashboard + "rules", "lists-table", "stolen_devices")

    browser.find_element(By.ID, "rule-name").send_keys("small_burst")
    browser.find_element(By.ID, "rule-when").send_keys("user_count_1h >= 3.0 && amout < 100.0")
    browser.find_element(By.ID, "rule-add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "rule-message"), "Refused: unknown field 'amout'"))

    condition = browser.find_element(By.ID, "rule-when")
    condition.send_keys(Keys.CONTROL, "a")  # React keeps its own value: clear() would not reach it
    condition.send_keys(Keys.DELETE, "user_count_1h >= 3.0 && amount < 100.0")
    browser.find_element(By.ID, "rule-backtest").click()
    # The 40 stored rows all have user_count_1h = 3 and amount 42: every one matches.
    wait.until(ec.text_to_be_present_in_element((By.ID, "backtest-result"), "40 of 40 stored transactions match"))
    browser.find_element(By.ID, "rule-add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "rule-message"), "Rule small_burst added and enabled"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "rules-table"), "user_count_1h >= 3.0 && amount < 100.0"))

    browser.find_element(By.ID, "list-pick").send_keys("stolen_devices")
    browser.find_element(By.ID, "list-value").send_keys("phone-user-01")
    browser.find_element(By.ID, "list-reason").send_keys("chargeback")
    browser.find_element(By.ID, "list-add").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "list-message"), "phone-user-01 added to stolen_devices"))
    trail = asyncio.run(_audit(settings.static_database_url))
    assert trail == [
        ("rule", "small_burst", "created", "dashboard (loopback)"),
        ("list", "stolen_devices", "entries added", "dashboard (loopback)"),
    ]


async def _make_list(database: str) -> None:
    from fraudflow.decisions import store

    conn = await asyncpg.connect(database)
    try:
        await store.create_list(conn, "stolen_devices", "device", "deny", "chargebacks", "setup")
    finally:
        await conn.close()


async def _audit(database: str) -> list[tuple[str, str, str, str]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT object, name, change, author FROM policy_audit WHERE author <> 'setup' ORDER BY id"
        )
        return [(r["object"], r["name"], r["change"], r["author"]) for r in rows]
    finally:
        await conn.close()


async def _challenge_and_drift(database: str) -> None:
    """20 transactions scored by both models (they disagree on 4), 6 labelled, and two hours of drift."""
    conn = await asyncpg.connect(database)
    now = datetime.now(UTC)
    try:
        for i in range(20):
            event_id = uuid.uuid4()
            champion = "review" if i < 5 else "approve"
            challenger = "review" if i < 3 or 5 <= i < 7 else "approve"
            await conn.execute(
                """INSERT INTO challenger_scores (event_id, challenger_version, champion_version, champion_proba,
                       champion_decision, fraud_proba, anomaly_score, decision, scored_at)
                   VALUES ($1, 'newer', 'served', $2, $3, $4, 0.1, $5, $6)""",
                event_id,
                0.3 if champion == "review" else 0.001,
                champion,
                0.3 if challenger == "review" else 0.002,
                challenger,
                now - timedelta(minutes=i),
            )
            if i < 6:  # labelled: frauds 0, 1, 5; legitimate 2, 3, 4
                await conn.execute(
                    """INSERT INTO labels (event_id, label, source, known_at, author)
                       VALUES ($1, $2, 'analyst', now(), 'ana')""",
                    event_id,
                    "fraud" if i in (0, 1, 5) else "legitimate",
                )
        hour = now.replace(minute=0, second=0, microsecond=0)
        for back, psi in ((2, 0.04), (1, 0.31)):
            await conn.execute(
                """INSERT INTO drift_reports (window_start, window_end, model_version, transactions, score_psi,
                       features_psi, max_feature, max_feature_psi, approve_share, review_share, decline_share,
                       degraded_share)
                   VALUES ($1, $2, 'served', 1000, $3, '{"Amount": 0.5}', 'Amount', 0.5, 0.97, 0.02, 0.01, 0.1)""",
                hour - timedelta(hours=back),
                hour - timedelta(hours=back - 1),
                psi,
            )
    finally:
        await conn.close()


def test_the_models_page_compares_champion_and_challenger_and_draws_drift(
    dashboard: str, browser: WebDriver, settings: Settings
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    assert settings.static_database_url
    asyncio.run(_challenge_and_drift(settings.static_database_url))
    wait = _own_page(browser, dashboard + "models", "challenge", "They agree on")
    text = browser.find_element(By.ID, "challenge").text
    assert "Champion served decides; challenger newer scored the same 20 transactions" in text
    assert "agree on 80.0% of decisions" in text  # 16 of 20
    # Labelled: 0-5, frauds 0, 1, 5. The champion flags 0-4: precision 2/5, recall 2/3. The challenger flags
    # 0-2, 5 and 6 (unlabelled, so not counted): precision 3/4, recall 3/3.
    quality = browser.find_element(By.ID, "challenge-quality").text
    assert "champion served 5 40.0% 66.7%" in quality
    assert "challenger newer 4 75.0% 100.0%" in quality
    wait.until(ec.text_to_be_present_in_element((By.ID, "drift-psi"), "act 0.25"))
    assert "watch 0.1" in browser.find_element(By.ID, "drift-psi").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-models.png"))


async def _open_cases(database: str) -> None:
    """Cases as the consumer opens them, for the forty stored rows (30 reviews: one case per user)."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("CREATE TEMP TABLE reviewed AS SELECT * FROM fraud_predictions")
        await conn.execute("SELECT fraudflow_open_cases('reviewed'::regclass)")
    finally:
        await conn.close()


async def _labels(database: str) -> list[tuple[str, str, str, str | None]]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT label, source, author, note FROM latest_labels")
    finally:
        await conn.close()
    return [(r["label"], r["source"], r["author"], r["note"]) for r in rows]


def test_the_review_page_claims_shows_and_closes_a_case_by_keyboard(
    dashboard: str, browser: WebDriver, settings: Settings
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    assert settings.static_database_url
    asyncio.run(_give_reasons(settings.static_database_url, "user-00"))
    asyncio.run(_open_cases(settings.static_database_url))
    wait = _own_page(browser, dashboard + "review", "queue-summary", "30 open cases")

    def alt(key: str) -> None:
        ActionChains(browser).key_down(Keys.ALT).send_keys(key).key_up(Keys.ALT).perform()

    alt("n")  # next case
    wait.until(ec.text_to_be_present_in_element((By.ID, "case-title"), "Case 1: user user-00, 1 transactions"))
    assert "is yours until" in browser.find_element(By.ID, "case-message").text
    view = browser.find_element(By.ID, "case-view").text
    assert "rule card_testing (v2, review): many small payments" in view  # what decided, in the table and below
    assert "9 payments by the user in the last hour; usual: 1 (+1.25 log-odds)" in view  # the model's view
    assert "User user-00" in view  # the user's history below the case
    wait.until(ec.text_to_be_present_in_element((By.ID, "queue-summary"), "29 open cases"))
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-review.png"))

    browser.find_element(By.ID, "case-note").send_keys("the cardholder denies it")
    alt("s")  # save the note, keep the case
    wait.until(ec.text_to_be_present_in_element((By.ID, "case-message"), "Note saved on case 1"))
    alt("f")  # fraud
    wait.until(ec.text_to_be_present_in_element((By.ID, "case-message"), "Case 1 closed as fraud"))
    assert "1 transactions labelled" in browser.find_element(By.ID, "case-message").text
    assert asyncio.run(_labels(settings.static_database_url)) == [
        ("fraud", "analyst", "dashboard (loopback)", "the cardholder denies it")
    ]

    browser.get(dashboard)  # the label appears among the monitor's figures
    wait.until(ec.text_to_be_present_in_element((By.ID, "kpi-confirmed"), "1: 1 flagged"))
