"""Speculative replies: prepared during the endpoint wait, sent on the endpoint, discarded on resume."""

import asyncio

from .fakes import make_settings, silence, speech
from .test_session import Harness


async def wait_until(predicate, timeout_s=5.0):
    async def poll():
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout_s)


async def test_speculation_hit_sends_the_prepared_reply_after_the_endpoint():
    async with Harness() as h:
        await h.say()
        metrics = await h.sink.wait_for("turn.metrics")
    assert metrics.data["speculation"] == "hit"
    marks = metrics.data["marks_ms"]
    assert marks["first_audio_sent"] >= marks["endpoint"] > marks["llm_first_token"]
    assert h.metrics.speculations.labels("hit")._value.get() == 1


async def test_resumed_speech_discards_a_prepared_reply_without_a_trace():
    async with Harness() as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(160))  # a pause: longer than pause_ms, shorter than the endpoint
        await wait_until(lambda: h.session.replies.speculation is not None and h.session.replies.speculation.response_ids)
        discarded = list(h.session.replies.speculation.response_ids)
        held = h.session.outbox._by_id[discarded[0]]
        await wait_until(lambda: len(held.frames) > 0)  # its audio is ready, and held back
        assert held.held and h.session.replies.speculation.held_events
        h.feed(speech(300))
        h.feed(silence(600))
        metrics = await h.sink.wait_for("turn.metrics")
    assert len(h.sink.of("response.created")) == 1 and len(h.sink.of("response.done")) == 1
    assert h.sink.of("response.created")[0].response_id not in discarded
    assert not any(kind == "audio" and item.response_id in discarded for kind, item in h.sink.items)
    assert not any(e.response_id in discarded for e in h.sink.events)
    assert metrics.data["speculation_misses"] == 1 and metrics.data["speculation"] == "hit"
    assert metrics.data["speculation_wasted_cpu_ms"] >= 0
    assert [m.role for m in h.session.conversation.history] == ["user", "assistant"]
    assert h.metrics.speculations.labels("miss")._value.get() == 1


async def test_speculation_can_be_switched_off():
    from .fakes import fake_engines

    engines = fake_engines()
    engines.speculate = False
    async with Harness(engines) as h:
        await h.say()
        metrics = await h.sink.wait_for("turn.metrics")
    assert "speculation" not in metrics.data
    marks = metrics.data["marks_ms"]
    assert marks["llm_first_token"] >= marks["endpoint"]


class ScriptedEot:
    """An end-of-turn scorer that answers a fixed probability."""

    def __init__(self, probability: float):
        self.p = probability
        self.texts = []

    async def probability(self, text: str) -> float:
        self.texts.append(text)
        return self.p


async def test_an_incomplete_sounding_pause_keeps_the_turn_open():
    from .fakes import fake_engines

    engines = fake_engines()
    engines.eot = ScriptedEot(0.0)  # "i'd like to book a flight to": wait up to 1200 ms
    async with Harness(engines) as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(160))  # the pause begins; its transcript gets scored
        await wait_until(lambda: h.session._turn is not None and h.session._turn.eot.latest == 0.0)
        h.feed(silence(600))  # 760 ms of silence: past the plain 300 ms endpoint
        await wait_until(lambda: len(h.session._audio_in) == 0)
        await asyncio.sleep(0.05)
        assert "input_audio_buffer.committed" not in h.sink.types()
        h.feed(silence(600))  # 1360 ms: past the longest wait
        metrics = await h.sink.wait_for("turn.metrics")
    assert engines.eot.texts and metrics.data["eot_probability"] == 0.0
