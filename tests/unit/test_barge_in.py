"""Speech over a reply, with scripted engines: a backchannel pauses and resumes the reply, other
words or long speech interrupt it, and the words heard still map to the reply's text."""

import asyncio

import numpy as np
import pytest

from voice_pipeline.protocol import commands as cmd
from voice_pipeline.session.barge_in import is_backchannel
from voice_pipeline.session.echo import EchoGate

from .fakes import FakeLlm, FakeStt, fake_engines, make_settings, silence, speech
from .test_session import Harness
from .test_speculation import wait_until


def paced_harness(stt_text: str, llm: FakeLlm | None = None) -> Harness:
    settings = make_settings()
    settings.tts.pacing_lead_ms = 80  # real-time pacing: a pause has audio left to hold back
    return Harness(fake_engines(stt=FakeStt(stt_text), llm=llm), settings)


def audio_between(h: Harness, start: int, end: int, response_id: str) -> int:
    return sum(1 for kind, item in h.sink.items[start:end] if kind == "audio" and item.response_id == response_id)


@pytest.mark.parametrize("text", ["Mhm.", "M-H-N", "M.H.N.", "Mm-hmm.", "Uh-huh.", "yeah", "Yeah. Yeah.", "Okay.", "Right!", "Oh, okay.",
                                  "", "  "])
def test_backchannels_and_silence_are_not_interruptions(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["Stop.", "Wait, no, I meant Paris.", "no", "Uh-uh.", "What about Berlin?", "okay but why"])
def test_other_words_are(text):
    assert not is_backchannel(text)


async def test_a_backchannel_pauses_the_reply_then_it_resumes_and_completes():
    async with paced_harness("Mhm.") as h:
        await h.session.handle(cmd.UserText("tell me about paris"))
        started = await h.sink.wait_for("output_audio_buffer.started")
        h.feed(speech(300))
        await wait_until(lambda: h.session.outbox.paused)
        await asyncio.sleep(0)
        paused_at = len(h.sink.items)
        h.feed(silence(300))
        ignored = await h.sink.wait_for("input_audio_buffer.speech_stopped")
        stopped_at = h.sink.items.index(("event", ignored))
        done = await h.sink.wait_for("response.done")
    rid = started.response_id
    assert ignored.data["ignored"] == "backchannel"
    assert audio_between(h, paused_at, stopped_at, rid) == 0  # nothing sent while the words were judged
    assert audio_between(h, stopped_at, len(h.sink.items), rid) > 0  # ... and the rest after
    assert done.response_id == rid and done.data["status"] == "completed"
    assert done.data["played_text"] == done.data["text"]
    types = h.sink.types()
    # the client is told to hold its playback at once, before the words are judged, then to go on
    paused, resumed = h.sink.of("output_audio_buffer.paused"), h.sink.of("output_audio_buffer.resumed")
    assert len(paused) == len(resumed) == 1 and paused[0].response_id == resumed[0].response_id == rid
    assert types.index("output_audio_buffer.paused") < types.index("output_audio_buffer.resumed") \
        < types.index("response.done")
    assert abs(types.index("output_audio_buffer.resumed") - types.index("input_audio_buffer.speech_stopped")) == 1
    assert paused[0].data["audio_ms"] == resumed[0].data["audio_ms"]  # nothing sent in between
    resumed_at = h.sink.items.index(("event", resumed[0]))
    assert audio_between(h, h.sink.items.index(("event", paused[0])), resumed_at, rid) == 0
    assert "output_audio_buffer.cleared" not in types and "input_audio_buffer.committed" not in types
    assert types.count("response.created") == 1  # the backchannel is not answered
    assert h.session.conversation.history[-1].content == done.data["text"]
    assert h.metrics.barge_ins.labels("backchannel")._value.get() == 1
    assert h.metrics.interruptions._value.get() == 0


async def test_words_over_the_reply_interrupt_it_and_are_answered():
    llm = FakeLlm(hold_after=5)  # "Paris is the capital," then waits: the reply is still speaking
    async with paced_harness("stop", llm) as h:
        await h.session.handle(cmd.UserText("tell me about paris"))
        started = await h.sink.wait_for("output_audio_buffer.started")
        h.feed(speech(300))
        await wait_until(lambda: h.session.outbox.paused)
        record = h.session.replies.current.record
        await asyncio.sleep(0.3)  # the outbox's clock is the wall clock: the client plays out its lead meanwhile
        h.feed(silence(600))
        cleared = await h.sink.wait_for("output_audio_buffer.cleared")
        done = await h.sink.wait_for("response.done")
        await h.sink.wait_for("input_audio_buffer.committed")  # the words are a turn of their own
        llm.release.set()
    rid = started.response_id
    assert cleared.response_id == rid and cleared.data["reason"] == "barge_in"
    assert done.data["status"] == "cancelled"
    types = h.sink.types()  # paused at once, cleared when the words were judged, never resumed
    assert types.index("output_audio_buffer.paused") < types.index("output_audio_buffer.cleared")
    assert h.sink.of("output_audio_buffer.paused")[0].response_id == rid
    assert "output_audio_buffer.resumed" not in types
    # Held past the client's lead, everything sent before the pause was played, and that is what the
    # reply's history keeps: the pause did not move the heard position.
    assert done.data["played_text"] == record.played_text(h.session.outbox.sent_ms(rid)) != ""
    assert h.session.conversation.history[-2].content == done.data["played_text"]
    cleared_at = h.sink.items.index(("event", cleared))
    assert audio_between(h, cleared_at, len(h.sink.items), rid) == 0
    assert h.metrics.barge_ins.labels("words")._value.get() == 1
    assert h.metrics.interruptions._value.get() == 1
    assert not h.session.outbox.paused


async def test_speech_too_long_for_a_backchannel_interrupts_before_any_pause():
    llm = FakeLlm(hold_after=5)
    async with paced_harness("Mhm.", llm) as h:  # even if its words would read as a backchannel
        await h.session.handle(cmd.UserText("tell me about paris"))
        await h.sink.wait_for("output_audio_buffer.started")
        h.feed(speech(1200))
        cleared = await h.sink.wait_for("output_audio_buffer.cleared")
        speech_stopped = h.sink.of("input_audio_buffer.speech_stopped")
        llm.release.set()
    assert cleared.data["reason"] == "barge_in" and speech_stopped == []  # interrupted while still speaking
    types = h.sink.types()
    assert types.index("output_audio_buffer.paused") < types.index("output_audio_buffer.cleared")
    assert "output_audio_buffer.resumed" not in types
    assert h.metrics.barge_ins.labels("long_speech")._value.get() == 1


async def test_clearing_the_input_while_held_lets_the_reply_go_on():
    async with paced_harness("Mhm.") as h:
        await h.session.handle(cmd.UserText("tell me about paris"))
        await h.sink.wait_for("output_audio_buffer.started")
        h.feed(speech(320))
        await wait_until(lambda: h.session.outbox.paused and h.session._vad_pos_ms >= 320)  # all of it heard
        await h.session.handle(cmd.ClearInput())
        done = await h.sink.wait_for("response.done")
    assert done.data["status"] == "completed" and not h.session.outbox.paused
    types = h.sink.types()
    assert types.index("output_audio_buffer.paused") < types.index("output_audio_buffer.resumed") < types.index("response.done")


def _voice_like(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped like speech: a band-limited carrier with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(16_000 * seconds)
    carrier = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / 16_000 + seed)
    return (0.3 * carrier * envelope).astype(np.float32)


def test_the_echo_gate_finds_the_reply_under_a_delay_and_not_the_users_voice():
    gate = EchoGate()
    reply, user = _voice_like(2.0, 1), _voice_like(2.0, 2)
    for i in range(0, len(reply), 640):  # 40 ms frames, played back to back from t = 10 s
        gate.played(reply[i : i + 640], 16_000, 10.0 + i / 16_000)
    delay = int(0.150 * 16_000)
    echo = 0.316 * np.concatenate([np.zeros(delay, np.float32), reply])[: len(reply)]  # -10 dB, 150 ms late
    window = gate.window_samples
    end = 16_000  # the input window ending 1 s into the reply
    assert gate.is_echo(echo[end - window : end], 10.0 + end / 16_000)
    assert not gate.is_echo(user[end - window : end], 10.0 + end / 16_000)
    double_talk = user + echo
    assert not gate.is_echo(double_talk[end - window : end], 10.0 + end / 16_000)
    assert not gate.is_echo(echo[end - window : end], 20.0)  # long after the reply: nothing to echo
