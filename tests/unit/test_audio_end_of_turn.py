"""The audio end-of-turn model in the session's endpoint decision, with scripted scores.

A sure "complete" ends the turn before the plain silence rule; "incomplete" holds it through a long
pause while the prepared reply stays held and is thrown away when the user goes on; a failing or
late model leaves the silence rule in charge; the verdict is in `turn.metrics` and in /metrics.
"""

from __future__ import annotations

import asyncio

import numpy as np

from .fakes import FakeLlm, fake_engines, make_settings, silence, speech
from .test_session import Harness
from .test_speculation import wait_until


class ScriptedAudioEot:
    """An audio end-of-turn model answering scripted scores, one per pause (the last one repeats)."""

    name = "scripted-audio"

    def __init__(self, *scores: float, fail: bool = False, hold: asyncio.Event | None = None) -> None:
        self.scores, self.fail, self.hold = list(scores), fail, hold
        self.audio_lengths: list[int] = []

    async def complete_probability(self, audio_16k: np.ndarray) -> float:
        self.audio_lengths.append(len(audio_16k))
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise RuntimeError("scripted model failure")
        return self.scores.pop(0) if len(self.scores) > 1 else self.scores[0]


class ScriptedAudioText(ScriptedAudioEot):
    """audio+text: the audio score as above, and one text score for every pause's words."""

    def __init__(self, audio: float, text: float) -> None:
        super().__init__(audio)
        self.text_score = text
        self.texts: list[str] = []

    async def probability(self, text: str) -> float:
        self.texts.append(text)
        return self.text_score


def harness(model, llm=None, **vad) -> Harness:
    engines = fake_engines(llm=llm)
    engines.eot = model
    settings = make_settings()
    for key, value in vad.items():
        setattr(settings.vad, key, value)
    return Harness(engines, settings)


async def settle(h: Harness) -> None:
    await wait_until(lambda: len(h.session._audio_in) == 0)
    await asyncio.sleep(0.05)


async def test_a_sure_model_ends_the_turn_before_the_plain_silence_rule():
    model = ScriptedAudioEot(0.99)
    async with harness(model) as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(200))  # the pause starts (96 ms) and is scored; less than the 300 ms rule
        await wait_until(lambda: h.session._pause_eot.verdict is not None)
        assert "input_audio_buffer.committed" not in h.sink.types()
        h.feed(silence(40))  # 240 ms of silence in all: enough for a sure model, not for the rule
        await settle(h)
        assert "input_audio_buffer.committed" in h.sink.types()
        metrics = await h.sink.wait_for("turn.metrics")
    assert model.audio_lengths and model.audio_lengths[0] >= 16 * 400  # the turn's audio so far
    data = metrics.data
    assert (data["eot_signal"], data["eot_decision"], data["eot_score"]) == ("audio", "complete", 0.99)
    assert "eot_model_ms" in data and data["speculation"] == "hit"
    assert h.metrics.end_of_turn.labels("audio", "complete")._value.get() == 1
    assert b'vp_end_of_turn_total{decision="complete",signal="audio"} 1.0' in _exposition(h)


async def test_an_incomplete_pause_holds_the_turn_and_its_prepared_reply_never_plays():
    model = ScriptedAudioEot(0.02, 0.97)  # "could you check the weather for ..." then the real end
    async with harness(model) as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(1000))  # a long pause: far past the plain 300 ms rule
        await settle(h)
        assert "input_audio_buffer.committed" not in h.sink.types()
        spec = h.session.replies.speculation
        assert spec is not None and spec.response_ids
        prepared = list(spec.response_ids)
        held = h.session.outbox._by_id[prepared[0]]
        await wait_until(lambda: len(held.frames) > 0)  # its audio is ready, and held back
        assert not any(kind == "audio" for kind, _ in h.sink.items)
        h.feed(speech(400))  # the user goes on
        h.feed(silence(300))
        metrics = await h.sink.wait_for("turn.metrics")
    assert not any(kind == "audio" and item.response_id in prepared for kind, item in h.sink.items)
    assert not any(e.response_id in prepared for e in h.sink.events)
    assert len(h.sink.of("input_audio_buffer.committed")) == 1
    assert metrics.data["eot_decision"] == "complete" and metrics.data["speculation_misses"] == 1


async def test_a_premature_endpoint_then_resumed_speech_stops_the_reply_at_once():
    llm = FakeLlm(hold_after=3)  # the reply is still being written when the user goes on
    model = ScriptedAudioEot(0.99)
    async with harness(model, llm=llm) as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(240))  # the model says "complete" and is wrong: the turn ends in this silence...
        first = await h.sink.wait_for("response.created")
        h.feed(speech(400))  # ...and the user carries on
        await h.sink.wait_for("input_audio_buffer.speech_started", count=2)
        resumed_at = len(h.sink.items)
        done = await h.sink.wait_for("response.done")  # the barge-in, while the reply is still held up
        llm.release.set()
        h.feed(silence(300))
        await h.sink.wait_for("turn.metrics")
    assert done.response_id == first.response_id and done.data["status"] == "cancelled"
    later = h.sink.items[resumed_at:]
    assert not any(kind == "audio" and item.response_id == first.response_id for kind, item in later)
    assert h.metrics.interruptions._value.get() == 1


async def test_a_failing_model_leaves_the_silence_rule_in_charge():
    async with harness(ScriptedAudioEot(0.5, fail=True)) as h:
        await h.say()
        metrics = await h.sink.wait_for("turn.metrics")
    assert (metrics.data["eot_signal"], metrics.data["eot_decision"]) == ("audio", "failed")
    assert "eot_score" not in metrics.data
    assert h.metrics.end_of_turn.labels("audio", "failed")._value.get() == 1


async def test_a_model_past_its_budget_is_not_waited_for():
    never = asyncio.Event()
    async with harness(ScriptedAudioEot(0.99, hold=never), eot_budget_ms=50) as h:
        await h.say()
        metrics = await h.sink.wait_for("turn.metrics")
    assert metrics.data["eot_decision"] == "late"


async def test_audio_and_text_must_both_read_as_finished():
    model = ScriptedAudioText(audio=0.95, text=0.05)  # sounds finished, the words are not
    async with harness(model) as h:
        h.feed(silence(200))
        h.feed(speech(400))
        h.feed(silence(1000))
        await settle(h)
        assert "input_audio_buffer.committed" not in h.sink.types()
        model.text_score = 0.95
        h.feed(speech(300))
        h.feed(silence(400))
        metrics = await h.sink.wait_for("turn.metrics")
    assert model.texts  # the pause's words were scored
    data = metrics.data
    assert (data["eot_signal"], data["eot_decision"], data["eot_text_score"]) == ("audio+text", "complete", 0.95)


def _exposition(h: Harness) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(h.metrics.registry)
