"""The browser client's behaviour in Debian's headless Chromium against a scripted server (no models):
capture framing, the playback flush on barge-in, push-to-talk, and the messages a person sees."""

from __future__ import annotations

import math
import struct

import pytest

from .browser_support import CHROMIUM, ScriptedServer, chromium_args, chromium_missing_reason, wait_until

pytestmark = pytest.mark.integration
FRAME_BYTES = 640  # 20 ms of 16 kHz PCM16


def tone_pcm16(seconds: float, rate_hz: int = 16000, frequency_hz: float = 440.0) -> bytes:
    n = int(seconds * rate_hz)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * frequency_hz * i / rate_hz)) for i in range(n)))


@pytest.fixture(scope="module")
def playwright():
    reason = chromium_missing_reason()
    if reason:
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def launch(playwright, fake_ui: bool = True):
    args = [arg for arg in chromium_args(fake_audio=None) if fake_ui or arg != "--use-fake-ui-for-media-stream"]
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture()
def scripted():
    server = ScriptedServer()
    with server as url:
        server.url = url
        yield server


@pytest.fixture()
def page(browser, scripted):  # closes before the scripted server stops
    context = browser.new_context()
    yield context.new_page()
    context.close()


def started(page, server: ScriptedServer, query: str = "") -> None:
    page.goto(server.url + "/" + query)
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => window.__vp.state === 'listening'")


def test_pure_modules_resample_and_compute_the_panel(page, scripted):
    page.goto(scripted.url + "/")
    result = page.evaluate("""async () => {
        const { StreamingResampler } = await import('/static/resampler.js');
        const { median, waterfall } = await import('/static/latency.js');
        const { backoffMs } = await import('/static/connection.js');
        const amplitude = (fromHz, toHz, f) => {
            const r = new StreamingResampler(fromHz, toHz);
            const x = Float32Array.from({length: fromHz}, (_, i) => 0.5 * Math.sin(2 * Math.PI * f * i / fromHz));
            const out = [];
            for (let i = 0; i < x.length; i += 128) out.push(...r.process(x.subarray(i, i + 128)));
            const y = out.slice(200, -200);
            return Math.sqrt(2 * y.reduce((a, v) => a + v * v, 0) / y.length);
        };
        return {
            pass1k: amplitude(48000, 16000, 1000), stop12k: amplitude(48000, 16000, 12000),
            up1k: amplitude(22050, 48000, 1000), odd1k: amplitude(44100, 16000, 1000),
            median: [median([]), median([3, 1, 2]), median([4, 1, 3, 2])],
            bars: waterfall({endpointing: 300, stt: 100, tts: 50}).map((b) => [b.stage, b.startMs, b.ms]),
            backoff: [backoffMs(0, () => 0.5), backoffMs(3, () => 0.5), backoffMs(30, () => 1)],
        };
    }""")
    assert abs(result["pass1k"] - 0.5) < 0.02 and abs(result["up1k"] - 0.5) < 0.02 and abs(result["odd1k"] - 0.5) < 0.02
    assert result["stop12k"] < 0.01  # above the 8 kHz Nyquist rate of 16 kHz: filtered, not aliased
    assert result["median"] == [None, 2, 2.5]
    assert result["bars"] == [["endpointing", 0, 300], ["stt", 300, 100], ["tts", 400, 50]]
    assert result["backoff"][0] < result["backoff"][1] <= result["backoff"][2] == 12000


def send_reply(scripted, seconds: float, turn_id: str = "t1", response_id: str = "r1") -> None:
    """A reply of `seconds` of tone, sent as the server sends audio (200 ms binary frames)."""
    scripted.send({"type": "response.created", "turn_id": turn_id, "response_id": response_id})
    scripted.send({"type": "output_audio_buffer.started", "response_id": response_id, "sample_rate": 16000})
    audio = tone_pcm16(seconds)
    for offset in range(0, len(audio), 6400):
        scripted.send_audio(audio[offset : offset + 6400])


def test_capture_frames_and_playback_flushed_at_once_on_clear(page, scripted):
    started(page, scripted)
    start = scripted.events("session.start")[0]["session"]
    assert start["input_audio_format"]["sample_rate"] == 16000 and start["turn_detection"]["type"] == "server_vad"
    wait_until(lambda: len(scripted.frames()) >= 10)
    assert set(scripted.frames()) == {FRAME_BYTES}

    send_reply(scripted, seconds=4.0)
    page.wait_for_function("() => window.__vp.counters.playedSamples > 0 && window.__vp.state === 'speaking'")

    scripted.send({"type": "output_audio_buffer.cleared", "response_id": "r1"})
    page.wait_for_function("() => window.__vp.counters.clears === 1")
    played = page.evaluate("() => window.__vp.counters.playedSamples")
    rate_hz = page.evaluate("() => window.__vp.sampleRateHz")
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__vp.counters.playedSamples") == played < 4.0 * rate_hz
    assert page.evaluate("() => window.__vp.state") == "listening"

    page.get_by_label("Type a message").fill("hello there")
    page.keyboard.press("Enter")
    wait_until(lambda: scripted.events("conversation.item.create"))
    assert scripted.events("conversation.item.create")[0]["item"]["content"][0]["text"] == "hello there"


def test_playback_pauses_at_once_keeps_its_buffer_and_resumes_where_it_stopped(page, scripted):
    started(page, scripted)
    send_reply(scripted, seconds=1.5)
    page.wait_for_function("() => window.__vp.counters.playedSamples > 0")

    scripted.send({"type": "input_audio_buffer.speech_started", "turn_id": "t2", "audio_start_ms": 0})
    scripted.send({"type": "output_audio_buffer.paused", "response_id": "r1", "turn_id": "t2", "audio_ms": 1500})
    page.wait_for_function("() => window.__vp.playbackPaused && window.__vp.counters.pauses === 1")
    held = page.evaluate("() => window.__vp.counters.playedSamples")
    rate_hz = page.evaluate("() => window.__vp.sampleRateHz")
    page.wait_for_timeout(2000)  # longer than the whole reply: a player that ignored the pause would be done
    assert page.evaluate("() => window.__vp.counters.playedSamples") == held < 1.4 * rate_hz

    scripted.send({"type": "output_audio_buffer.resumed", "response_id": "r1", "audio_ms": 1500})
    scripted.send({"type": "input_audio_buffer.speech_stopped", "turn_id": "t2", "ignored": "backchannel"})
    scripted.send({"type": "output_audio_buffer.stopped", "response_id": "r1", "audio_ms": 1500})
    page.wait_for_function("() => window.__vp.state === 'listening'")  # speaking again, then drained: played to the end
    counters = page.evaluate("() => window.__vp.counters")
    assert counters["clears"] == counters["droppedSamples"] == 0 and not page.evaluate("() => window.__vp.playbackPaused")
    assert abs(counters["playedSamples"] - 1.5 * rate_hz) < 0.01 * rate_hz  # nothing lost, nothing repeated

    # paused, then cleared (real words): what was held is dropped, never played
    send_reply(scripted, seconds=1.5, turn_id="t2", response_id="r2")
    page.wait_for_function(f"() => window.__vp.counters.playedSamples > {counters['playedSamples']}")
    scripted.send({"type": "output_audio_buffer.paused", "response_id": "r2", "audio_ms": 1500})
    page.wait_for_function("() => window.__vp.counters.pauses === 2")
    held = page.evaluate("() => window.__vp.counters.playedSamples")
    scripted.send({"type": "output_audio_buffer.cleared", "response_id": "r2"})
    page.wait_for_function("() => window.__vp.counters.clears === 1")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__vp.counters.playedSamples") == held
    assert page.evaluate("() => window.__vp.counters.droppedSamples") > 0 and not page.evaluate("() => window.__vp.playbackPaused")


def test_push_to_talk_sends_audio_only_while_held_and_barges_in(page, scripted):
    started(page, scripted)
    page.get_by_label("Push-to-talk").check()
    wait_until(lambda: scripted.events("session.update"))
    assert scripted.events("session.update")[0]["session"]["turn_detection"] == {"type": "none"}
    page.wait_for_timeout(300)  # frames already in flight arrive
    idle_frames = len(scripted.frames())
    page.wait_for_timeout(300)
    assert len(scripted.frames()) == idle_frames

    scripted.send({"type": "response.created", "turn_id": "t1", "response_id": "r1"})
    scripted.send({"type": "output_audio_buffer.started", "response_id": "r1", "sample_rate": 16000})
    page.wait_for_function("() => window.__vp.state === 'speaking'")
    talk = page.get_by_role("button", name="Hold to talk")
    talk.focus()
    page.keyboard.down("Space")
    wait_until(lambda: len(scripted.frames()) >= idle_frames + 10)
    page.keyboard.up("Space")
    wait_until(lambda: scripted.events("input_audio_buffer.commit"))
    order = [item["type"] if isinstance(item, dict) else "audio" for item in scripted.received[-200:]]
    cancel, clear, commit = (order.index(kind) for kind in ("response.cancel", "input_audio_buffer.clear", "input_audio_buffer.commit"))
    assert cancel < clear < commit and "audio" in order[clear:commit]
    assert page.evaluate("() => window.__vp.state") == "thinking"


def test_server_error_then_lost_connection_reconnects_and_says_so(page, scripted):
    started(page, scripted)
    message = page.locator("#message")
    scripted.send({"type": "error", "error": {"code": "stage_failed", "message": "the model failed", "recoverable": True}})
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('stage_failed')")
    assert "Server error: the model failed" in message.inner_text()

    scripted.drop()
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('Connection lost')")
    assert "Reconnecting in" in message.inner_text()
    wait_until(lambda: len(scripted.events("session.start")) == 2)
    page.wait_for_function("() => document.querySelector('#link').textContent === 'Connected'")
    assert message.is_hidden()
    assert "Reconnected." in page.locator("#transcript").inner_text()


def test_unreachable_server_is_reported(page, scripted):
    # `?server=` may only name the page's own server (docs/security.md): a path that has no socket there.
    started_query = f"?server={scripted.url.replace('http:', 'ws:')}/v1/missing"
    page.goto(scripted.url + "/" + started_query)
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('unreachable')")
    assert "Retrying in" in page.locator("#message").inner_text()
    assert page.locator("#link").inner_text() == "Unreachable"


def test_no_microphone_is_reported_and_typing_still_works(page, scripted):
    page.add_init_script("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('none', 'NotFoundError'));")
    page.goto(scripted.url + "/")
    page.get_by_role("button", name="Start").click()
    wait_until(lambda: scripted.events("session.start"))
    page.wait_for_function("() => window.__vp.state === 'ready'")
    assert "No microphone was found" in page.locator("#message").inner_text()


def test_microphone_permission_denied_is_reported(playwright, scripted):
    browser = launch(playwright, fake_ui=False)  # no auto-accept: the permission request is refused
    try:
        page = browser.new_context().new_page()
        page.goto(scripted.url + "/")
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("() => document.querySelector('#message').textContent.length > 0")
        assert "permission was denied" in page.locator("#message").inner_text()
    finally:
        browser.close()
