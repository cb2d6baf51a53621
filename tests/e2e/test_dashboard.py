"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real `cxpulse run`.

Checks what a person would: every tile renders (good/bad colours from the registry's directions), a
posted answer shows up within 2 s without a reload, the window selector and filters show what `/v1/pulse`
says, the journey row shows `/v1/journey` with its worst cells marked, the page comes back by itself after
the server restarts, and the console stays clean. Screenshots (1280×800 and 390×844, seeded and with
`cxpulse demo` data) go to tests/artifacts/; `CXPULSE_UPDATE_DOCS=1` refreshes docs/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Route, sync_playwright

from services.demo import DemoTotals, run_demo
from tests.conftest import event
from tests.server_support import CxpulseRun

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRICS = [
    "nps",
    "csat",
    "ces",
    "fcr",
    "resolution_time",
    "active_customers",
    "dau",
    "wau",
    "mau",
    "stickiness",
    "churn",
    "retention",
    "trial_conversion",
    "referral_rate",
]
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: Window edges (and the previous windows' edges) the page and the test might read on either side of.
EDGES = (HOUR, 2 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY)

#: CI sets this (.ci/run): a machine without chromium must fail here, not skip the browser tests.
REQUIRE_BROWSER = os.environ.get("CXPULSE_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRE_BROWSER, reason="needs chromium (scripts/system-deps.sh)"
)


class Service(CxpulseRun):
    """`cxpulse run` restarted in place (same port, same data dir) with the page's helpers."""

    def post(self, events: list[dict[str, Any]]) -> None:
        for i in range(0, len(events), 5_000):
            response = httpx.post(f"{self.url}/v1/events", json=events[i : i + 5_000], timeout=60)
            assert response.status_code == 202, response.text
            assert not response.json()["rejected"], response.text

    def pulse(self, **params: str) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/v1/pulse", params=params, timeout=30).json()
        return body


def _service(tmp: Path) -> Service:
    return Service(tmp / "data", tmp / "service.log")


def _clear_of_edges(t: int, now: int) -> bool:
    """Not within 10 minutes of a window edge as of any moment of the test run."""
    return all(abs((now - t) - edge) > 10 * MINUTE for edge in EDGES)


def history(now: int, seed: int = 7) -> list[dict[str, Any]]:
    """A month of varied activity over several touchpoints, channels and segments (deterministic)."""
    rng = random.Random(seed)
    touchpoints = ["website", "checkout", "onboarding", "usage", "support"]
    channels, segments = ["web", "app", "email"], ["smb", "enterprise"]
    out: list[dict[str, Any]] = []

    def at(lo_ms: int, hi_ms: int) -> int:
        while True:
            t = now - rng.randint(lo_ms, hi_ms)
            if _clear_of_edges(t, now):
                return t

    def dims() -> dict[str, str]:
        return {
            "touchpoint": rng.choice(touchpoints),
            "channel": rng.choice(channels),
            "segment": rng.choice(segments),
        }

    for c in range(300):
        cid = f"cust-{c}"
        d = dims()
        out.append(event(f"sub-{c}", "subscription_start", at(31 * DAY, 40 * DAY), cid, plan="pro", **d))
        if c % 9 == 0:
            out.append(event(f"cancel-{c}", "subscription_cancel", at(2 * MINUTE, 29 * DAY), cid, **d))
        for k in range(4):
            t = at(2 * MINUTE, 29 * DAY)
            score = min(10, max(0, round(rng.gauss(7.5 if d["channel"] != "email" else 5.5, 2.2))))
            out.append(event(f"nps-{c}-{k}", "survey_answer", t, cid, survey="nps", score=score, **d))
            out.append(
                event(f"csat-{c}-{k}", "survey_answer", t, cid, survey="csat", score=rng.randint(2, 5), **d)
            )
            out.append(
                event(f"ces-{c}-{k}", "survey_answer", t, cid, survey="ces", score=rng.randint(1, 6), **d)
            )
            referral = rng.random() < 0.2
            out.append(
                event(
                    f"buy-{c}-{k}",
                    "purchase",
                    t,
                    cid,
                    order_id=f"o-{c}-{k}",
                    amount=20,
                    referral=referral,
                    **d,
                )
            )
            out.append(event(f"login-{c}-{k}", "login", at(2 * MINUTE, 29 * DAY), cid, **d))
        if c % 3 == 0:
            t = at(HOUR + 20 * MINUTE, 28 * DAY)
            case = {"case_id": f"K-{c}"}
            out.append(event(f"contact-{c}", "support_contact", t, cid, **case, **d))
            if c % 6 == 0:
                out.append(event(f"contact2-{c}", "support_contact", t + 10 * MINUTE, cid, **case, **d))
            out.append(
                event(f"resolved-{c}", "support_resolved", t + rng.randint(5, 50) * MINUTE, cid, **case, **d)
            )
        if c % 4 == 0:
            out.append(
                event(f"trial-{c}", "trial_start", at(3 * DAY, 25 * DAY), f"t-{c}", trial_days=2, plan="pro")
            )
    return out


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM is not None, "CXPULSE_REQUIRE_BROWSER=1 but no chromium on PATH (scripts/system-deps.sh)"
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One seeded service for the tests that do not restart it."""
    svc = _service(tmp_path_factory.mktemp("dashboard"))
    svc.start()
    svc.post(history(int(time.time() * 1000)))
    yield svc
    svc.stop()


class Console:
    """Errors the page reports: console.error, uncaught exceptions, failed loads."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")


def open_dashboard(browser: Browser, url: str, width: int = 1280, height: int = 800) -> tuple[Page, Console]:
    page = browser.new_page(viewport={"width": width, "height": height})
    console = Console(page)
    page.goto(url)
    page.wait_for_selector("#status[data-state='live']", timeout=10_000)
    wait_all_tiles(page)
    return page, console


def wait_all_tiles(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile')].every(t => t.dataset.state === 'ok' || "
        "t.dataset.state === 'empty') && document.querySelectorAll('.tile').length === 14",
        timeout=10_000,
    )


def tile_values(page: Page) -> dict[str, float | None]:
    raw: dict[str, str] = page.eval_on_selector_all(
        ".tile", "ts => Object.fromEntries(ts.map(t => [t.dataset.metric, t.dataset.value]))"
    )
    return {m: (float(v) if v else None) for m, v in raw.items()}


def pulse_values(body: dict[str, Any]) -> dict[str, float | None]:
    return {m: r["value"] for m, r in body["readings"].items()}


def assert_tiles_match_pulse(page: Page, service: Service, **params: str) -> None:
    """The tiles show exactly the readings `/v1/pulse` gives for the same parameters."""
    expected = pulse_values(service.pulse(**params))
    assert any(v is not None for v in expected.values()), "the seeded data should give readings"
    page.wait_for_function(
        "expected => [...document.querySelectorAll('.tile')].every(t => "
        "(expected[t.dataset.metric] === null ? t.dataset.value === '' : "
        "Math.abs(Number(t.dataset.value) - expected[t.dataset.metric]) < 1e-9))",
        arg=expected,
        timeout=20_000,  # a loaded 2-core machine serialises the side panels' reads in chDB
    )
    assert tile_values(page) == pytest.approx(expected)


def test_every_tile_renders_at_desktop_and_phone_width_without_console_errors(
    browser: Browser, service: Service
) -> None:
    page, console = open_dashboard(browser, service.url)
    tiles = page.locator(".tile")
    assert sorted(tiles.evaluate_all("ts => ts.map(t => t.dataset.metric)")) == sorted(METRICS)
    for metric in METRICS:
        tile = page.locator(f'.tile[data-metric="{metric}"]')
        state = tile.get_attribute("data-state")
        if state == "empty":
            assert tile.locator(".empty").is_visible() and "Not enough data" in tile.inner_text()
        else:
            assert tile.locator(".num").inner_text() not in ("", "…", "–")
            assert "vs previous" in tile.inner_text() or "previous" in tile.inner_text()
    page.wait_for_function("() => document.querySelectorAll('.tile .spark canvas').length === 14")
    nps = page.locator('.tile[data-metric="nps"]').inner_text()
    assert "95% CI" in nps and "n" in nps and ("significant" in nps or "n.s." in nps)
    # which way is good news comes from the registry (GET /v1/metrics): a falling CES is green
    directions = {m["id"]: m["direction"] for m in httpx.get(f"{service.url}/v1/metrics").json()}
    readings = service.pulse(window="24h")["readings"]
    colours = page.eval_on_selector_all(
        ".tile",
        "ts => Object.fromEntries(ts.map(t => [t.dataset.metric, t.querySelector('.delta').className]))",
    )
    judged = 0
    for metric, r in readings.items():
        if r["delta"]:
            better = (r["delta"] > 0) == (directions[metric] == "higher")
            assert ("good" if better else "bad") in colours[metric].split(), (metric, r["delta"], colours)
            judged += 1
    assert judged >= 5
    # endpoints this server does not have (alerts land on another branch) say so instead of failing
    paths = httpx.get(f"{service.url}/openapi.json").json()["paths"]
    for panel, path, served in (
        ("#journey", "/v1/journey", ("ok", "empty")),
        ("#alerts", "/v1/alerts", ("firing", "quiet")),
        ("#responses", "/v1/alerts/notifications", ("ok", "empty")),
    ):
        page.wait_for_function(f"() => document.querySelector('{panel}').dataset.state", timeout=5_000)
        state = page.locator(panel).get_attribute("data-state")
        if path in paths:
            assert state in served, (panel, state)
        else:
            assert state == "unavailable" and "not available" in page.inner_text(panel), panel
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280x800.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280x800-full.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.screenshot(path=str(ARTIFACTS / "dashboard-390x844.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-390x844-full.png"), full_page=True)
    # keyboard: the controls are reachable with Tab, in order
    page.focus("#window")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "touchpoint"
    assert console.errors == []
    page.close()


def test_a_posted_answer_changes_the_nps_tile_without_a_reload(browser: Browser, service: Service) -> None:
    """The tile follows a 202 through the stream. How fast is a benchmark (`bench.live`: p95 200 ms against
    the 1 s target), not this test: its bound only stops a hang (a loaded CI machine once took > 2 s)."""
    page, console = open_dashboard(browser, service.url + "/?window=1h")
    page.evaluate("window.__sameDocument = true")
    before = page.locator('.tile[data-metric="nps"] .n').inner_text()
    page.wait_for_timeout(1_000)  # past the stream's once-a-second limit
    now = int(time.time() * 1000)
    service.post([event(f"live-{now}", "survey_answer", now - MINUTE, "cust-live", survey="nps", score=0)])
    page.wait_for_function(  # from the 202: the answer is durable and readable
        "before => document.querySelector('.tile[data-metric=\"nps\"] .n').textContent !== before",
        arg=before,
        timeout=10_000,
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload
    expected = service.pulse(metrics="nps", window="1h")["readings"]["nps"]
    assert tile_values(page)["nps"] == pytest.approx(expected["value"])
    assert console.errors == []
    page.close()


def test_window_selector_and_filters_show_what_pulse_says(browser: Browser, service: Service) -> None:
    page, console = open_dashboard(browser, service.url)
    assert_tiles_match_pulse(page, service, window="24h")
    page.select_option("#window", "7d")
    assert_tiles_match_pulse(page, service, window="7d")
    assert "window=7d" in page.url
    page.fill("#channel", "email")
    page.press("#channel", "Enter")
    assert_tiles_match_pulse(page, service, window="7d", channel="email")
    page.fill("#touchpoint", "checkout")
    page.press("#touchpoint", "Enter")
    assert_tiles_match_pulse(page, service, window="7d", channel="email", touchpoint="checkout")
    page.select_option("#window", "30d")
    page.fill("#touchpoint", "")
    page.fill("#channel", "")
    page.fill("#segment", "enterprise")
    page.press("#segment", "Enter")
    assert_tiles_match_pulse(page, service, window="30d", segment="enterprise")
    assert console.errors == []
    page.close()


def test_the_page_reconnects_by_itself_after_a_server_restart(browser: Browser, tmp_path: Path) -> None:
    svc = _service(tmp_path)
    svc.start()
    try:
        page, console = open_dashboard(browser, svc.url + "/?window=1h")
        assert page.locator('.tile[data-metric="nps"]').get_attribute("data-state") == "empty"
        svc.stop()
        page.wait_for_selector("#status[data-state='reconnecting'], #status[data-state='offline']")
        svc.start()  # same port, same data dir
        page.wait_for_selector("#status[data-state='live']", timeout=15_000)
        now = int(time.time() * 1000)
        svc.post([event("after-restart", "survey_answer", now - MINUTE, "c1", survey="nps", score=10)])
        page.wait_for_selector('.tile[data-metric="nps"][data-state="ok"]', timeout=5_000)
        assert page.locator('.tile[data-metric="nps"] .num').inner_text() == "100.0"
        # the browser logs the cut stream, requests cut by the stop and the refused reconnects while the
        # server is down; nothing else
        network = (
            "net::ERR_CONNECTION_REFUSED",
            "net::ERR_CONNECTION_RESET",
            "net::ERR_INCOMPLETE_CHUNKED_ENCODING",
        )
        assert [e for e in console.errors if not any(n in e for n in network)] == []
        page.close()
    finally:
        svc.stop()


def _reading(value: float | None, n: int = 40) -> dict[str, Any]:
    return {"value": value, "n": n, "ci": None, "previous": {"value": None, "n": 0}, "delta": None}


def expected_worst(journey: dict[str, Any], registry: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(metric, touchpoint) of the cells the page must mark: per KPI the worst value by the registry's
    direction, when at least two touchpoints have one and they differ; counts (volume) are never marked."""
    worst = set()
    for m in registry:
        if m["unit"] == "customers":
            continue
        values = {
            tp: r[m["id"]]["value"]
            for tp, r in journey["touchpoints"].items()
            if r[m["id"]]["value"] is not None
        }
        if len(values) < 2 or len(set(values.values())) == 1:
            continue
        pick = min if m["direction"] == "higher" else max
        bottom = pick(values.values())
        worst |= {(m["id"], tp) for tp, v in values.items() if v == bottom}
    return worst


def test_the_journey_row_shows_v1_journey_with_the_worst_cells_marked(
    browser: Browser, service: Service
) -> None:
    page, console = open_dashboard(browser, service.url + "/?window=30d")
    page.wait_for_selector("#journey[data-state='ok']")
    journey = httpx.get(f"{service.url}/v1/journey", params={"window": "30d"}, timeout=30).json()
    registry = httpx.get(f"{service.url}/v1/metrics").json()
    heads = page.locator("#journey thead th").all_inner_texts()
    assert heads == ["KPI", *journey["touchpoints"]]  # journey order, as the endpoint answers
    assert heads[1:4] == ["website", "checkout", "onboarding"]
    cells = page.eval_on_selector_all(
        "#journey td",
        "cs => cs.map(c => [c.parentElement.dataset.metric, c.dataset.touchpoint, c.dataset.value, "
        "c.classList.contains('worst')])",
    )
    assert len(cells) == len(registry) * len(journey["touchpoints"])
    for metric, tp, value, _ in cells:
        expected = journey["touchpoints"][tp][metric]["value"]
        assert (float(value) if value else None) == pytest.approx(expected), (metric, tp)
    marked = {(metric, tp) for metric, tp, _, worst in cells if worst}
    assert marked == expected_worst(journey, registry)
    assert ("nps", "website") in marked or len(marked) >= 3  # the seeded month has real differences
    assert console.errors == []
    page.close()


def outcome_cells(page: Page) -> dict[tuple[str, str], float | None]:
    cells = page.eval_on_selector_all(
        "#outcomes td[data-outcome]",
        "cs => cs.map(c => [c.parentElement.dataset.group, c.dataset.outcome, c.dataset.value])",
    )
    return {(group, outcome): float(value) if value else None for group, outcome, value in cells}


def test_the_outcomes_panel_shows_v1_outcomes_per_group_and_survey(
    browser: Browser, service: Service
) -> None:
    page, console = open_dashboard(browser, service.url + "/?window=30d")
    page.wait_for_selector("#outcomes table.outcomes")
    for survey, groups in (
        ("nps", ["promoter", "passive", "detractor"]),
        ("ces", ["easy", "neutral", "hard"]),
    ):
        if survey != "nps":
            page.select_option("#oc-survey", survey)
            page.wait_for_selector(f"#outcomes tr[data-group='{groups[0]}']")
        params = {"survey": survey, "window": "30d", "horizon": "7d"}
        body = httpx.get(f"{service.url}/v1/outcomes", params=params, timeout=30).json()
        assert page.locator("#outcomes tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)") == groups
        assert sum(g["customers"] for g in body["groups"].values()) > 0, body  # the seeded month has a cohort
        shown = outcome_cells(page)
        assert set(shown) == {(g, o) for g in groups for o in ("repurchase", "churned", "referred")}
        for (group, outcome), value in shown.items():
            assert value == pytest.approx(body["groups"][group][outcome]["value"]), (survey, group, outcome)
    assert console.errors == []
    page.close()


def test_alert_panels_render_what_the_alert_endpoints_answer(browser: Browser, service: Service) -> None:
    """`/v1/alerts` lands on another branch: answer it in the browser, shaped as SPEC §4."""
    firing = [
        {
            "rule": {"id": "r1", "name": "Checkout NPS falling", "metric": "nps", "severity": "critical"},
            "state": "firing",
            "since": "2026-12-01T08:00:00Z",
            "reading": _reading(-12.5),
        }
    ]
    answers = [
        {
            "kind": "response",
            "payload": {
                "survey": "nps",
                "score": 2,
                "customer_id": "cust-9",
                "comment": "slow delivery",
                "touchpoint": "checkout",
            },
        }
    ]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    console = Console(page)

    def openapi(route: Route) -> None:
        spec = route.fetch().json()
        for path in ("/v1/alerts", "/v1/alerts/notifications"):
            spec["paths"][path] = {"get": {}}
        route.fulfill(json=spec)

    page.route("**/openapi.json", openapi)
    page.route("**/v1/alerts?*", lambda route: route.fulfill(json=firing))
    page.route("**/v1/alerts/notifications?*", lambda route: route.fulfill(json=answers))
    page.goto(service.url)
    page.wait_for_selector("#alerts[data-state='firing']")
    assert "Checkout NPS falling" in page.inner_text("#alerts")
    page.wait_for_selector("#responses[data-state='ok']")
    assert "slow delivery" in page.inner_text("#responses")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-panels-full.png"), full_page=True)
    assert console.errors == []
    page.close()


def test_screenshots_with_demo_data(browser: Browser, tmp_path: Path) -> None:
    """What a newcomer sees after `make run` + `make demo ARGS="--history 30d --incident checkout"`: a fresh
    service fed a month of history and a few live seconds. `CXPULSE_UPDATE_DOCS=1` also writes
    docs/dashboard.png."""
    svc = _service(tmp_path)
    svc.start()
    try:
        demo = run_demo(
            svc.url,
            rate=150,
            customers=300,
            duration_s=8,
            incident="checkout",
            seed=3,
            history_s=30 * 86_400,
            out=lambda _: None,
        )
        totals = _in_thread(demo)
        assert totals.accepted > 800 and totals.rejected == 0
        page, console = open_dashboard(browser, svc.url)
        page.wait_for_selector("#journey[data-state='ok']")
        page.wait_for_function("() => document.querySelectorAll('.tile .spark canvas').length === 14")
        page.wait_for_selector("#outcomes[data-state='ok']")  # the history gives the cohort answers
        assert page.locator('.tile[data-metric="nps"]').get_attribute("data-state") == "ok"
        # the incident shows: checkout is the journey's worst NPS
        assert "worst" in (
            page.locator('#journey tr[data-metric="nps"] td[data-touchpoint="checkout"]').get_attribute(
                "class"
            )
            or ""
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-demo-1280x800.png"))
        shot = ARTIFACTS / "dashboard-demo-1280x800-full.png"
        page.screenshot(path=str(shot), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "dashboard-demo-390x844.png"))
        if os.environ.get("CXPULSE_UPDATE_DOCS") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
        assert console.errors == []
        page.close()
    finally:
        svc.stop()


def _in_thread(work: Coroutine[Any, Any, DemoTotals]) -> DemoTotals:
    """Run a coroutine to the end on its own loop (Playwright's sync API owns this thread's loop)."""
    result: list[DemoTotals] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(work)))
    thread.start()
    thread.join(120)
    assert result, "the demo did not finish"
    return result[0]
