"""Admission from measured capacity (app/capacity.py): the door closes when recent turns' p90
passes the target, opens again below it with hysteresis, forgets old turns, and never overrides
the `max_sessions` ceiling; through a real loopback server the refusal is `server_busy` with its
reason, /ready says full, /metrics shows the door, and the admitted session goes on."""

from __future__ import annotations

import asyncio
import math
import re
import time

import aiohttp

from voice_pipeline.app.capacity import Capacity, lower_p90, target_p90_ms, turn_latency_ms
from voice_pipeline.app.host import SessionHost
from voice_pipeline.app.loop_lag import LoopLag
from voice_pipeline.app.server import PipelineServer
from voice_pipeline.app.settings import Settings
from voice_pipeline.metrics import PipelineMetrics

from .fakes import FakeLlm, fake_engines, make_settings
from .loopback import serve_on_loopback

TARGET_MS = 1000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _capacity(clock: FakeClock, **options) -> Capacity:
    return Capacity(TARGET_MS, clock=clock, **options)


def test_the_door_closes_when_the_recent_p90_passes_the_target():
    capacity = _capacity(FakeClock())
    for _ in range(4):
        capacity.add(2 * TARGET_MS)
    assert capacity.admits() and capacity.p90_ms() is None, "fewer than min_turns: nothing is known yet"
    capacity.add(2 * TARGET_MS)
    assert not capacity.admits()
    assert capacity.p90_ms() == 2 * TARGET_MS
    assert "measured capacity" in capacity.reason() and "5 turns" in capacity.reason()


def test_one_slow_turn_alone_never_closes_it():
    capacity = _capacity(FakeClock())
    for _ in range(9):
        capacity.add(TARGET_MS / 2)
    capacity.add(50 * TARGET_MS)
    assert capacity.admits()
    capacity.add(50 * TARGET_MS)  # two of 11 over the target: more than 10 %
    assert not capacity.admits()


def test_it_reopens_only_well_below_the_target_hysteresis():
    capacity = _capacity(FakeClock(), window_turns=5)
    for _ in range(5):
        capacity.add(2 * TARGET_MS)
    assert not capacity.admits()
    for _ in range(5):  # just under the target, above reopen_fraction of it: still shut
        capacity.add(0.9 * TARGET_MS)
    assert capacity.p90_ms() is not None and capacity.p90_ms() <= TARGET_MS
    assert not capacity.admits()
    for _ in range(5):
        capacity.add(0.5 * TARGET_MS)
    assert capacity.admits()
    for _ in range(5):  # the same band on the way up: it stays open
        capacity.add(0.9 * TARGET_MS)
    assert capacity.admits()


def test_old_turns_age_out_so_an_idle_worker_opens_again():
    clock = FakeClock()
    capacity = _capacity(clock, window_s=30.0)
    for _ in range(6):
        capacity.add(3 * TARGET_MS)
    assert not capacity.admits()
    clock.t += 29.0
    assert not capacity.admits()
    clock.t += 2.0
    assert capacity.admits() and capacity.turns() == 0


def test_only_the_last_window_turns_count():
    capacity = _capacity(FakeClock(), window_turns=20)
    for _ in range(20):
        capacity.add(3 * TARGET_MS)
    assert not capacity.admits()
    for _ in range(20):
        capacity.add(0.1 * TARGET_MS)
    assert capacity.admits() and capacity.turns() == 20


def test_a_target_of_zero_is_off():
    capacity = Capacity(0.0, clock=FakeClock())
    for _ in range(20):
        capacity.add(1e6)
    assert capacity.admits()


def test_the_target_comes_from_the_settings_or_from_the_first_audio_budget():
    settings = Settings()
    assert target_p90_ms(settings) == settings.budgets.first_audio_ms / 2
    settings.budgets.first_audio_ms = 4000
    assert target_p90_ms(settings) == 2000
    settings.server.admit_p90_ms = 700
    assert target_p90_ms(settings) == 700
    settings.server.admit_p90_ms = -1
    assert target_p90_ms(settings) == 0 and not Capacity.from_settings(settings).enabled
    assert Settings.load(environ={"VP_SERVER_ADMIT_P90_MS": "900"}).server.admit_p90_ms == 900


def test_a_turn_counts_from_its_endpoint_to_its_first_audio():
    assert turn_latency_ms({"voice_to_voice_ms": 900.0, "stages_ms": {"endpointing": 300.0, "stt": 200.0}}) == 600.0
    assert turn_latency_ms({"voice_to_voice_ms": 400.0, "stages_ms": {"llm_first_token": 300.0}}) == 400.0  # text
    assert turn_latency_ms({"voice_to_voice_ms": None, "stages_ms": {}}) is None  # no audio was sent
    assert lower_p90([1.0]) == 1.0 and lower_p90([5.0, 1.0, 3.0]) == 3.0


class _Placeholder:
    busy = False


def _host(max_sessions: int = 8, target_ms: float = TARGET_MS) -> tuple[SessionHost, FakeClock]:
    settings = make_settings()
    settings.server.max_sessions = max_sessions
    host = SessionHost(settings, PipelineMetrics(), fake_engines())
    clock = FakeClock()
    host.capacity = Capacity(target_ms, clock=clock)
    host.metrics.turn_listeners[:] = [host.capacity.observe_turn]
    return host, clock


def test_the_host_refuses_while_the_door_is_shut_but_an_empty_worker_takes_one():
    host, _ = _host()
    for _ in range(5):
        host.metrics.observe_turn({"voice_to_voice_ms": 3 * TARGET_MS, "stages_ms": {}}, "text", "completed")
    assert not host.capacity.admits()
    assert host.refusal() is None, "no session open: the worker takes one whatever was measured"
    host.sessions["s1"] = _Placeholder()  # type: ignore[assignment]
    assert host.refusal() == "server_busy"
    assert "measured capacity" in host.refusal_message("server_busy")


def test_the_session_limit_still_applies_with_the_door_open():
    host, _ = _host(max_sessions=2)
    host.sessions.update({"s1": _Placeholder(), "s2": _Placeholder()})  # type: ignore[dict-item]
    assert host.capacity.admits()
    assert host.refusal() == "server_busy"
    assert "limit of 2 sessions" in host.refusal_message("server_busy")
    host.sessions.pop("s2")
    assert host.refusal(reserved=1) == "server_busy" and host.refusal() is None


class SlowFirstTokenLlm(FakeLlm):
    """A fake LLM whose first token comes after a short real wait, so every reply takes longer
    than the test's 1 ms target whatever the machine."""

    async def stream(self, messages, *, max_tokens=None):
        await asyncio.sleep(0.02)
        async for token in super().stream(messages, max_tokens=max_tokens):
            yield token


async def _text_turn(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict:
    await ws.send_json({"type": "conversation.item.create",
                        "item": {"role": "user", "content": [{"type": "input_text", "text": text}]}})
    while True:
        message = await asyncio.wait_for(ws.receive(), 5)
        if message.type == aiohttp.WSMsgType.TEXT and (event := message.json())["type"] == "turn.metrics":
            return event


async def test_through_a_server_slow_turns_close_the_door_and_the_last_session_leaving_opens_it():
    settings = make_settings()
    settings.server.admit_p90_ms = 1  # any real reply is slower than this
    settings.routing.enabled = False  # every turn goes to the (slow) LLM, none to an instant template
    server = PipelineServer(settings, fake_engines(llm=SlowFirstTokenLlm()))
    runner, port = await serve_on_loopback(server.app())
    base = f"127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{base}/metrics") as response:
                text = await response.text()
                assert re.search(r"^vp_admission_open 1\.0$", text, re.M)
                assert re.search(r"^vp_admission_p90_seconds NaN$", text, re.M)
            async with http.ws_connect(f"ws://{base}/v1/realtime") as ws:
                await ws.send_json({"type": "session.start"})
                assert (await ws.receive_json())["type"] == "session.created"
                for k in range(server.host.capacity.min_turns):
                    metrics = await _text_turn(ws, f"tell me a fact number {k}")
                    assert metrics["voice_to_voice_ms"] is not None
                async with http.get(f"http://{base}/ready") as ready:
                    body = await ready.json()
                    assert ready.status == 503 and body["full"] and body["reason"] == "server_busy"
                    assert "measured capacity" in body["message"]
                async with http.get(f"http://{base}/metrics") as response:
                    text = await response.text()
                    assert re.search(r"^vp_admission_open 0\.0$", text, re.M)
                    p90_s = float(re.search(r"^vp_admission_p90_seconds (\S+)$", text, re.M).group(1))
                    assert not math.isnan(p90_s) and p90_s > 0
                refused = await http.ws_connect(f"ws://{base}/v1/realtime")
                error = (await refused.receive_json())["error"]
                assert error["code"] == "server_busy" and "measured capacity" in error["message"]
                await refused.receive()
                assert refused.close_code == 1013
                again = await _text_turn(ws, "one more please")  # the admitted session is never dropped
                assert again["voice_to_voice_ms"] is not None and not ws.closed
            for _ in range(100):  # the last session left: what was measured is forgotten
                async with http.get(f"http://{base}/ready") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.02)
            assert ready.status == 200
            async with http.ws_connect(f"ws://{base}/v1/realtime") as ws:
                await ws.send_json({"type": "session.start"})
                assert (await ws.receive_json())["type"] == "session.created"
    finally:
        await runner.cleanup()


def _lagging(clock: FakeClock, lag_ms: float, samples: int = 40) -> LoopLag:
    loop_lag = LoopLag(interval_s=0.05, window_s=10.0, min_samples=20, clock=clock)
    for _ in range(samples):
        clock.t += 0.05
        loop_lag.add(lag_ms)
    return loop_lag


def test_a_lagging_event_loop_shuts_the_door_before_any_turn_has_finished():
    clock = FakeClock()
    loop_lag = _lagging(clock, 400.0)
    capacity = Capacity(TARGET_MS, clock=clock, loop_lag=loop_lag, max_loop_lag_ms=250.0)
    assert capacity.p90_ms() is None  # no turn measured yet
    assert not capacity.admits()
    assert "event loop runs 400 ms late" in capacity.reason()
    for lag_ms, door_open in ((220.0, False), (1.0, True)):  # 220: under the limit, above 80 % of it
        for _ in range(200):  # 10 s of samples: the window holds only these
            clock.t += 0.05
            loop_lag.add(lag_ms)
        assert capacity.admits() is door_open


def test_the_loop_lag_is_looked_at_only_with_a_positive_limit_and_enough_samples():
    clock = FakeClock()
    assert Capacity(TARGET_MS, clock=clock, loop_lag=_lagging(clock, 900.0), max_loop_lag_ms=0).admits()
    assert Capacity(TARGET_MS, clock=clock, loop_lag=_lagging(clock, 900.0, samples=5), max_loop_lag_ms=250).admits()
    settings = Settings.load(environ={"VP_SERVER_ADMIT_LOOP_LAG_MS": "120"})
    assert Capacity.from_settings(settings, LoopLag()).max_loop_lag_ms == 120


async def test_the_loop_lag_measures_how_late_a_blocked_loop_wakes():
    loop_lag = LoopLag(interval_s=0.01, window_s=10.0, min_samples=3)
    sampler = asyncio.create_task(loop_lag.run())
    await asyncio.sleep(0.05)
    for _ in range(6):
        time.sleep(0.08)  # the loop is blocked: the sampler's timer fires ~80 ms late
        await asyncio.sleep(0.015)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert loop_lag.p90_ms() is not None and loop_lag.p90_ms() >= 40.0


async def test_through_a_server_a_saturated_event_loop_makes_ready_say_full():
    settings = make_settings()
    settings.server.admit_loop_lag_ms = 30
    server = PipelineServer(settings, fake_engines())
    runner, port = await serve_on_loopback(server.app())
    base = f"127.0.0.1:{port}"

    async def hog(until: float) -> None:  # work that holds the loop 80 ms at a time
        while time.monotonic() < until:
            time.sleep(0.08)
            await asyncio.sleep(0.005)

    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://{base}/v1/realtime") as ws:
            await ws.send_json({"type": "session.start"})
            assert (await ws.receive_json())["type"] == "session.created"
            async with http.get(f"http://{base}/ready") as ready:
                assert ready.status == 200
            await hog(time.monotonic() + 0.2 + server.host.loop_lag.min_samples * 0.09)
            async with http.get(f"http://{base}/ready") as ready:
                body = await ready.json()
                assert ready.status == 503 and body["reason"] == "server_busy"
                assert "event loop runs" in body["message"]
            async with http.get(f"http://{base}/metrics") as response:
                lag_s = float(re.search(r"^vp_event_loop_lag_seconds (\S+)$", await response.text(), re.M).group(1))
                assert lag_s >= 0.03
    finally:
        await runner.cleanup()
