"""The session with scripted fake engines: event order, barge-in, history, failures, bad input."""

import asyncio

import pytest

from voice_pipeline.audio import float_to_pcm16
from voice_pipeline.metrics import MARKS, PipelineMetrics
from voice_pipeline.protocol import commands as cmd
from voice_pipeline.session.session import Session

from .fakes import FakeLlm, FakeStt, RecordingSink, fake_engines, silence, speech, make_settings

VOICE_TURN_ORDER = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.text.done",
    "output_audio_buffer.stopped",
    "response.done",
    "turn.metrics",
]


class Harness:
    def __init__(self, engines=None, settings=None):
        self.sink = RecordingSink()
        self.metrics = PipelineMetrics()
        self.engines = engines or fake_engines()
        self.session = Session("s1", settings or make_settings(), self.engines, self.metrics)

    async def __aenter__(self):
        self.task = asyncio.create_task(self.session.run(self.sink))
        await self.session.handle(cmd.StartSession({}))
        await self.sink.wait_for("session.created")
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def feed(self, audio, frame_ms=20):
        n = 16 * frame_ms
        for i in range(0, len(audio), n):
            self.session.feed_samples(audio[i : i + n])

    async def say(self, ms=640):
        self.feed(silence(200))
        self.feed(speech(ms))
        self.feed(silence(600))


def subsequence(expected, actual):
    it = iter(actual)
    return all(any(a == e for a in it) for e in expected)


async def test_voice_turn_events_come_in_protocol_order_with_metrics():
    async with Harness() as h:
        await h.say()
        metrics = await h.sink.wait_for("turn.metrics")
    types = [t for t in h.sink.types() if t != "response.text.delta"]
    assert subsequence(VOICE_TURN_ORDER, types), types
    # Audio starts after the reply exists and before it stops; with a speculative reply the whole
    # text may already be done when the audio is released.
    assert types.index("response.created") < types.index("output_audio_buffer.started") < types.index("output_audio_buffer.stopped")
    assert h.sink.of("conversation.item.input_audio_transcription.completed")[0].data["transcript"]
    done = h.sink.of("response.done")[0].data
    assert done["status"] == "completed" and done["text"].startswith("Paris is the capital")
    marks = metrics.data["marks_ms"]
    assert list(marks)[0] == "speech_end" and set(MARKS) <= set(marks)
    # The critical path is ordered; the final STT pass may finish before the endpoint (early final).
    chain = [m for m in MARKS if m != "endpoint"]
    assert [marks[m] for m in chain] == sorted(marks[m] for m in chain)
    # Work may run ahead of the endpoint (speculation), but no audio goes out before it.
    assert marks["endpoint"] >= marks["speech_end"] and marks["first_audio_sent"] >= marks["endpoint"]
    assert set(metrics.data["stages_ms"]) == {"endpointing", "stt", "llm_first_token", "first_piece", "tts", "send"}
    assert metrics.data["voice_to_voice_ms"] == pytest.approx(sum(metrics.data["stages_ms"].values()), abs=0.5)
    assert metrics.data["llm_tokens"] == 9
    assert h.sink.items[-1][0] == "event"  # all audio went out before the end events


async def test_first_piece_is_synthesized_before_the_whole_reply_is_written():
    tts_texts = []
    engines = fake_engines()
    engines.tts.texts = tts_texts
    async with Harness(engines) as h:
        await h.session.handle(cmd.UserText("hello"))
        await h.sink.wait_for("response.done")
    assert tts_texts[0] == "Paris is the capital,"
    assert len(tts_texts) >= 2
    assert engines.tts.firsts == [True] + [False] * (len(tts_texts) - 1)  # only it may come in windows


async def test_history_grows_and_the_system_prompt_comes_first():
    llm = FakeLlm()
    async with Harness(fake_engines(llm=llm)) as h:
        await h.session.handle(cmd.UserText("first question"))
        await h.sink.wait_for("response.done")
        await h.session.handle(cmd.UserText("second question"))
        await h.sink.wait_for("response.done", count=2)
    second = llm.calls[1]
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[0].content == "You are a test assistant."
    assert second[-1].content == "second question"


async def test_barge_in_clears_audio_cancels_llm_and_keeps_only_what_was_heard():
    llm = FakeLlm(hold_after=5)  # speaks "Paris is the capital," then waits
    settings = make_settings()
    settings.vad.barge_in_confirm_ms = 0  # the older rule: any speech over the reply interrupts it at once
    async with Harness(fake_engines(llm=llm), settings) as h:
        await h.session.handle(cmd.UserText("tell me about paris"))
        await h.sink.wait_for("output_audio_buffer.started")
        h.feed(speech(300))
        cleared = await h.sink.wait_for("output_audio_buffer.cleared")
        done = await h.sink.wait_for("response.done")
        rid = done.response_id
        # The client reports it heard 250 ms: two words of the first piece (100 ms per word).
        await h.session.handle(cmd.TruncateReply(rid, 250))
    assert cleared.response_id == rid and done.data["status"] == "cancelled"
    assert llm.closed == 1
    order = h.sink.types()
    assert order.index("input_audio_buffer.speech_started") < order.index("output_audio_buffer.cleared") < order.index("response.done")
    cleared_at = next(i for i, (k, item) in enumerate(h.sink.items) if k == "event" and item is cleared)
    assert not any(k == "audio" and item.response_id == rid for k, item in h.sink.items[cleared_at:])
    assert h.session.conversation.history[-1].content == "Paris is"
    assert h.metrics.interruptions._value.get() == 1


async def test_client_cancel_stops_the_reply():
    llm = FakeLlm(hold_after=3)
    async with Harness(fake_engines(llm=llm)) as h:
        await h.session.handle(cmd.UserText("go on"))
        await h.sink.wait_for("response.created")
        await h.session.handle(cmd.CancelResponse())
        done = await h.sink.wait_for("response.done")
    assert done.data["status"] == "cancelled"


async def test_text_turn_metrics_start_at_the_input():
    async with Harness() as h:
        await h.session.handle(cmd.UserText("hi"))
        metrics = await h.sink.wait_for("turn.metrics")
    assert metrics.data["input"] == "text"
    assert "speech_end" not in metrics.data["marks_ms"] and "input_end" in metrics.data["marks_ms"]
    assert metrics.data["voice_to_voice_ms"] is not None


async def test_reset_clears_context_but_keeps_transcript_log():
    async with Harness() as h:
        await h.session.handle(cmd.UserText("remember me"))
        await h.sink.wait_for("response.done")
        await h.session.handle(cmd.ResetConversation())
        await h.sink.wait_for("conversation.reset.done")
        assert h.session.conversation.history == []
        assert ("user", "remember me") in h.session.conversation.log


async def test_stt_failure_is_reported_and_the_session_goes_on():
    async with Harness(fake_engines(stt=FakeStt(fail=True))) as h:
        await h.say()
        error = await h.sink.wait_for("error")
        await h.session.handle(cmd.UserText("still there?"))
        done = await h.sink.wait_for("response.done")
    assert error.data["error"]["code"] == "stage_failed" and error.data["error"]["recoverable"]
    assert done.data["status"] == "completed"


async def test_llm_failure_mid_reply_fails_that_reply_only():
    llm = FakeLlm(hold_after=5, fail_after=5)  # fails once the first piece is being heard
    async with Harness(fake_engines(llm=llm)) as h:
        await h.session.handle(cmd.UserText("break"))
        await h.sink.wait_for("output_audio_buffer.started")
        llm.release.set()
        done = await h.sink.wait_for("response.done")
        assert done.data["status"] == "failed"
        llm.fail_after = None
        await h.session.handle(cmd.UserText("again"))
        second = await h.sink.wait_for("response.done", count=2)
    assert second.data["status"] == "completed"
    assert h.sink.of("error")[0].data["error"]["code"] == "stage_failed"


async def test_empty_transcript_gives_no_reply():
    async with Harness(fake_engines(stt=FakeStt(text=""))) as h:
        await h.say()
        await h.sink.wait_for("conversation.item.input_audio_transcription.completed")
        await h.session.handle(cmd.UserText("now reply"))
        await h.sink.wait_for("response.done")
    assert len(h.sink.of("response.created")) == 1


async def test_push_to_talk_commit_with_vad_off():
    async with Harness() as h:
        await h.session.handle(cmd.UpdateSession({"turn_detection": {"type": "none"}}))
        await h.sink.wait_for("session.updated")
        h.feed(speech(400))
        await asyncio.sleep(0)  # let the input loop take the frames
        while len(h.session._audio_in):
            await asyncio.sleep(0.001)
        await h.session.handle(cmd.CommitInput())
        done = await h.sink.wait_for("response.done")
    assert "input_audio_buffer.speech_started" not in h.sink.types()
    assert done.data["status"] == "completed"


async def test_commit_with_no_audio_is_an_error():
    async with Harness() as h:
        await h.session.handle(cmd.UpdateSession({"turn_detection": {"type": "none"}}))
        await h.session.handle(cmd.CommitInput())
        error = await h.sink.wait_for("error")
    assert error.data["error"]["code"] == "input_audio_buffer_empty"


@pytest.mark.parametrize(
    "data, code",
    [(b"\x00" * 3, "invalid_audio_frame"), (b"\x00" * 6402, "audio_frame_too_large")],
)
async def test_bad_audio_frames_get_errors_and_the_session_goes_on(data, code):
    async with Harness() as h:
        h.session.feed_pcm16(data)
        error = await h.sink.wait_for("error")
        h.session.feed_pcm16(float_to_pcm16(silence(20)))
        await h.session.handle(cmd.UserText("ok?"))
        await h.sink.wait_for("response.done")
    assert error.data["error"]["code"] == code


async def test_audio_and_commands_before_start_are_rejected():
    h = Harness()
    task = asyncio.create_task(h.session.run(h.sink))
    h.session.feed_pcm16(b"\x00\x00" * 320)
    await h.session.handle(cmd.UserText("hi"))
    await h.sink.wait_for("error", count=2)
    await h.session.handle(cmd.StartSession({}))
    await h.session.handle(cmd.StartSession({}))
    await h.sink.wait_for("error", count=3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    codes = [e.data["error"]["code"] for e in h.sink.of("error")]
    assert codes == ["session_not_started", "session_not_started", "invalid_event"]


async def test_bad_session_update_keeps_previous_settings():
    async with Harness() as h:
        await h.session.handle(cmd.UpdateSession({"input_audio_format": {"sample_rate": 11025}}))
        error = await h.sink.wait_for("error")
        await h.session.handle(cmd.UpdateSession({"input_audio_format": {"sample_rate": 48000}}))
        updated = await h.sink.wait_for("session.updated")
    assert error.data["error"]["code"] == "unsupported_sample_rate"
    assert updated.data["session"]["input_audio_format"]["sample_rate"] == 48000


async def test_full_input_queue_drops_oldest_and_counts():
    settings = make_settings()
    settings.server.audio_in_queue_frames = 4
    h = Harness(settings=settings)
    h.session.started = True  # feed before the input loop runs, so the queue fills
    h.feed(silence(200))
    assert h.session._audio_in.dropped == 6
    assert h.metrics.audio_in_dropped._value.get() == 6


async def test_tts_off_gives_text_only_replies():
    engines = fake_engines()
    engines.tts = None
    async with Harness(engines) as h:
        await h.session.handle(cmd.UserText("text please"))
        done = await h.sink.wait_for("response.done")
    assert done.data["status"] == "completed" and done.data["text"]
    assert not [item for kind, item in h.sink.items if kind == "audio"]


async def test_llm_failing_before_any_text_gives_the_apology_then_escalates():
    from voice_pipeline.reply.phrasebook import SORRY

    llm = FakeLlm(fail_after=0)
    settings = make_settings()
    settings.budgets.escalate_after_failures = 2
    async with Harness(fake_engines(llm=llm), settings) as h:
        await h.session.handle(cmd.UserText("one"))
        first = await h.sink.wait_for("response.done")
        await h.session.handle(cmd.UserText("two"))
        await h.sink.wait_for("response.done", count=2)
        escalation = await h.sink.wait_for("conversation.escalation")
        metrics = await h.sink.wait_for("turn.metrics", count=2)
    assert first.data["status"] == "completed" and first.data["text"] == SORRY
    assert escalation.data["reason"] == "repeated_failures"
    assert metrics.data["answered_by"] in ("cached", "none")
    assert h.metrics.escalations._value.get() == 1


async def test_routed_turns_use_templates_without_the_model():
    from voice_pipeline.engines.fallback import FallbackLLM
    from voice_pipeline.reply.answer import Answerer

    llm = FakeLlm()
    engines = fake_engines(llm=llm)
    engines.answerer = Answerer(router=None, small=FallbackLLM([llm], name="small"))
    async with Harness(engines) as h:
        await h.session.handle(cmd.UserText("what time is it"))
        timed = await h.sink.wait_for("turn.metrics")
        await h.session.handle(cmd.UserText("why is the sky blue"))
        modelled = await h.sink.wait_for("turn.metrics", count=2)
    assert timed.data["route"] == "instant" and timed.data["answered_by"] == "instant"
    assert h.sink.of("response.done")[0].data["text"].startswith("It's ")
    assert modelled.data["route"] == "small" and modelled.data["llm_engine"] == "fake-llm"
    assert len(llm.calls) == 1


async def test_stop_says_nothing_and_opens_no_reply():
    from voice_pipeline.reply.answer import Answerer

    engines = fake_engines()
    engines.answerer = Answerer(router=None, small=engines.llm)
    async with Harness(engines) as h:
        await h.session.handle(cmd.UserText("stop"))
        await h.session.handle(cmd.UserText("hello there friend"))
        await h.sink.wait_for("response.done")
    assert len(h.sink.of("response.created")) == 1


async def test_stt_over_budget_falls_back_to_the_apology():
    from voice_pipeline.reply.phrasebook import SORRY

    class SlowStt(FakeStt):
        async def transcribe(self, audio_16k, *, final):
            if final:
                await asyncio.sleep(3600)
            return await super().transcribe(audio_16k, final=final)

    settings = make_settings()
    settings.budgets.stt_final_ms = 1
    async with Harness(fake_engines(stt=SlowStt()), settings) as h:
        await h.say()
        done = await h.sink.wait_for("response.done")
        metrics = await h.sink.wait_for("turn.metrics")
    assert done.data["text"] == SORRY and metrics.data["stt_fallback"] == "budget"
    assert "conversation.item.input_audio_transcription.completed" not in h.sink.types()


async def test_stt_switched_off_asks_for_text():
    from voice_pipeline.reply.phrasebook import STT_OFF

    settings = make_settings()
    settings.capabilities.stt = False
    stt = FakeStt()
    async with Harness(fake_engines(stt=stt), settings) as h:
        await h.say()
        done = await h.sink.wait_for("response.done")
    assert done.data["text"] == STT_OFF and stt.calls == []


async def test_a_slow_first_audio_gets_the_cached_filler_meanwhile():
    import numpy as np

    from voice_pipeline.reply.phrasebook import FILLER, Phrasebook

    llm = FakeLlm(hold_after=0)  # the model says nothing until released
    settings = make_settings()
    settings.budgets.first_audio_ms = 1
    engines = fake_engines(llm=llm)
    engines.phrases = Phrasebook(16_000)
    engines.phrases.add(FILLER, np.full(1600, 0.1, dtype=np.float32))
    async with Harness(engines, settings) as h:
        await h.session.handle(cmd.UserText("think hard"))
        await h.sink.wait_for("output_audio_buffer.started")
        llm.release.set()
        metrics = await h.sink.wait_for("turn.metrics")
    assert metrics.data["first_audio_budget_miss"] is True
    assert h.sink.of("response.done")[0].data["status"] == "completed"
    assert h.metrics.fallbacks.labels("first_audio", "budget")._value.get() == 1
