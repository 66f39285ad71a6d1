"""Speech over the assistant through a real server on the real models: a backchannel lets the
reply go on to the end, the reply's own voice leaking back into the microphone (-10 dB, 150 ms
late) is not a barge-in, and real words still interrupt it."""

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


async def test_a_backchannel_over_the_reply_does_not_stop_it(server, piper_say, question):
    result = await overlap_trial(server.ws, "backchannel", spoken(piper_say, "Yeah."), "Yeah.", RATE_HZ, question)
    assert result.reply_status == "completed"


async def test_the_replys_own_echo_is_not_a_barge_in(server, question):
    result = await overlap_trial(server.ws, "echo", None, "", RATE_HZ, question)
    assert result.reply_status == "completed"
    assert not result.false_speech  # the echo never even started a user turn


async def test_real_words_over_the_reply_still_interrupt_it(server, piper_say, question):
    words = "Wait, no, I meant Paris."
    result = await overlap_trial(server.ws, "barge_in", spoken(piper_say, words), words, RATE_HZ, question)
    assert result.reply_status == "cancelled"
    assert result.stop_ms is not None and result.cleared_ms is not None
    assert result.stop_ms <= result.cleared_ms  # no reply audio after the clear


async def test_real_words_interrupt_the_reply_over_its_own_echo(server, piper_say, question):
    words = "Stop."
    result = await overlap_trial(server.ws, "barge_in", spoken(piper_say, words), words, RATE_HZ, question, echo=True)
    assert result.reply_status == "cancelled"
