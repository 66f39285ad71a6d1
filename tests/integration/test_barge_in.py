"""Speech over the assistant through a real server on the real models: a backchannel lets the
reply go on to the end, the reply's own voice leaking back into the microphone (-10 dB, 150 ms
late) is not a barge-in, and real words still interrupt it. Either way the client is told to pause
its playback as soon as the speech starts, before the words are judged (`output_audio_buffer.paused`),
then to go on (`.resumed`) or to drop what it holds (`.cleared`)."""

from __future__ import annotations

import pytest

from voice_pipeline.audio import read_wav
from voice_pipeline.bench.turn_overlap import LONG_QUESTION, overlap_trial

pytestmark = pytest.mark.integration

RATE_HZ = 22_050  # Piper's rate: the client streams it as is


@pytest.fixture(scope="module")
def question(piper_say):
    audio, rate = read_wav(piper_say(LONG_QUESTION, tail_s=0.0))
    assert rate == RATE_HZ
    return audio


def spoken(piper_say, text: str):
    audio, _ = read_wav(piper_say(text, lead_s=0.0, tail_s=0.0))
    return audio


def types_after(record: list[tuple[float, dict]], kind: str) -> list[str]:
    """The event types (and "audio"; a backchannel's speech_stopped as "ignored") from the first `kind` on."""
    types = ["ignored" if event.get("ignored") else event["type"] for _, event in record]
    return types[types.index(kind):]


async def test_a_backchannel_over_the_reply_does_not_stop_it(server, piper_say, question):
    record: list[tuple[float, dict]] = []
    result = await overlap_trial(server.ws, "backchannel", spoken(piper_say, "Yeah."), "Yeah.", RATE_HZ, question,
                                 record=record)
    assert result.reply_status == "completed"
    assert result.paused_ms is not None and result.resumed
    # reply audio ... the user's speech ... paused at once ... the verdict: resumed, and the rest of the reply
    after = types_after(record, "output_audio_buffer.started")
    speech = after.index("input_audio_buffer.speech_started")
    assert "audio" in after[:speech]
    paused, resumed = after.index("output_audio_buffer.paused"), after.index("output_audio_buffer.resumed")
    assert speech < paused < after.index("ignored") and paused < resumed  # paused before the words were judged
    assert "audio" not in after[paused:resumed] and "audio" in after[resumed:]
    assert "output_audio_buffer.cleared" not in after


async def test_the_replys_own_echo_is_not_a_barge_in(server, question):
    result = await overlap_trial(server.ws, "echo", None, "", RATE_HZ, question)
    assert result.reply_status == "completed"
    assert not result.false_speech  # the echo never even started a user turn


async def test_real_words_over_the_reply_still_interrupt_it(server, piper_say, question):
    words = "Wait, no, I meant Paris."
    record: list[tuple[float, dict]] = []
    result = await overlap_trial(server.ws, "barge_in", spoken(piper_say, words), words, RATE_HZ, question,
                                 record=record)
    assert result.reply_status == "cancelled"
    assert result.stop_ms is not None and result.cleared_ms is not None
    assert result.stop_ms <= result.cleared_ms  # no reply audio after the clear
    # reply audio ... the user's speech ... paused at once ... the words judged: cleared, never resumed
    assert result.paused_ms is not None and result.paused_ms <= result.cleared_ms and not result.resumed
    after = types_after(record, "output_audio_buffer.started")
    speech = after.index("input_audio_buffer.speech_started")
    paused, cleared = after.index("output_audio_buffer.paused"), after.index("output_audio_buffer.cleared")
    assert "audio" in after[:speech] and speech < paused < cleared
    assert "audio" not in after[paused:cleared]  # nothing more of the reply after the pause
    transcripts = [i for i, kind in enumerate(after) if kind.startswith("conversation.item.input_audio_transcription.")]
    assert transcripts and paused < transcripts[0]  # paused before any of the words were known
    assert "output_audio_buffer.resumed" not in after


async def test_real_words_interrupt_the_reply_over_its_own_echo(server, piper_say, question):
    words = "Stop."
    result = await overlap_trial(server.ws, "barge_in", spoken(piper_say, words), words, RATE_HZ, question, echo=True)
    assert result.reply_status == "cancelled"
