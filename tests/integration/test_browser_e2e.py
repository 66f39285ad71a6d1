"""The browser client end to end: real server, real models, Debian's headless Chromium with a fake
microphone that speaks a Piper-made question. Set VPTEST_SCREENSHOT=docs/browser-client.png to save
a screenshot of the page after the turn."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .browser_support import CHROMIUM, chromium_args, chromium_missing_reason, running_server, spoken_question

pytestmark = pytest.mark.integration
QUESTION = "What is the capital of France?"
KEY_WORDS = ("capital", "france")
TURN_TIMEOUT_MS = 120_000
SILENT_RMS = 1e-3  # digital silence is exactly 0; speech is orders of magnitude above this


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> str:
    with running_server(tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory) -> Path:
    # 1.5 s before (the page connects meanwhile), 45 s after: the fake microphone loops the file.
    return spoken_question(QUESTION, tmp_path_factory.mktemp("audio") / "question.wav", lead_s=1.5, tail_s=45.0)


@pytest.fixture()
def page(question_wav):
    reason = chromium_missing_reason()
    if reason:
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args(question_wav))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 600})
            page.console_lines = []
            page.on("console", lambda message: page.console_lines.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: page.console_lines.append(f"pageerror: {error}"))
            yield page
        finally:
            browser.close()


def wait_for_turn(page) -> None:
    try:
        page.wait_for_function(
            "() => window.__vp && window.__vp.events.some((e) => e.type === 'turn.metrics')", timeout=TURN_TIMEOUT_MS
        )
        # The server sends the last audio slightly ahead of real time: let the page play it out.
        page.wait_for_function("() => window.__vp.state !== 'speaking'", timeout=TURN_TIMEOUT_MS)
    except Exception:
        events = page.evaluate("() => window.__vp ? window.__vp.events.map((e) => e.type) : null")
        raise AssertionError(f"no complete turn; events={events} console={page.console_lines}") from None


def test_spoken_question_is_transcribed_answered_played_and_measured(server_url, page):
    page.goto(server_url + "/")
    page.get_by_role("button", name="Start").click()
    wait_for_turn(page)
    vp = page.evaluate(
        "() => ({events: window.__vp.events, counters: window.__vp.counters, rms: window.__vp.playedRms(),"
        " states: window.__vp.stateHistory})"
    )
    types = [event["type"] for event in vp["events"]]
    assert types[0] == "session.created", types
    assert not [e for e in vp["events"] if e["type"] == "error"], json.dumps(vp["events"])[-2000:]

    # The final transcript on the page holds the question's words.
    final = page.locator("#transcript .msg-user.final .text").first.inner_text().lower()
    assert all(word in final for word in KEY_WORDS), final

    # The assistant's reply streamed in as text and ended.
    assistant = page.locator("#transcript .msg-assistant").first
    assert assistant.inner_text().strip()
    assert "completed" in (assistant.get_attribute("class") or "")

    # The reply's audio went through the playback worklet, and it was not silence.
    assert vp["counters"]["audioChunksReceived"] > 0
    assert vp["counters"]["playedSamples"] > 0
    assert vp["rms"] > SILENT_RMS, vp["counters"]

    # The visible state went listening -> thinking -> speaking -> listening.
    states = vp["states"]
    order = [states.index(s) for s in ("hearing", "thinking", "speaking")]
    assert order == sorted(order), states
    assert states[-1] == "listening", states

    # The latency panel shows the turn: one bar per stage, and the running median.
    metrics = next(e for e in vp["events"] if e["type"] == "turn.metrics")
    turn = page.locator(f'#latency-list .latency-turn[data-turn-id="{metrics["turn_id"]}"]')
    assert turn.count() == 1
    bars = turn.locator(".stage-bar")
    assert bars.count() == len(metrics["stages_ms"]) > 0
    assert [row.get_attribute("data-stage") for row in turn.locator(".stage").all()] == list(metrics["stages_ms"])
    assert "Median voice-to-voice" in page.locator("#latency-summary").inner_text()
    assert not [line for line in page.console_lines if line.startswith(("pageerror", "error"))], page.console_lines

    screenshot = os.environ.get("VPTEST_SCREENSHOT")
    if screenshot:
        page.locator("#text").blur()
        page.screenshot(path=screenshot, full_page=True)
