"""Phone calls against the real server on loopback with the real models: a scripted Twilio media
stream (real-time 20 ms frames, marks echoed as played, clear honoured) and a real SIP phone
(baresip) that speaks a Piper-spoken question and records the answer."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.media_stream_client import TwilioFarEnd, first_sound_s, speech_end_s
from tests.integration.sip_phone import _free_udp_port, run_baresip_call
from voice_pipeline.audio import read_wav, resample

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Tell me a long story about a brave knight and a dragon."
INTERRUPTION = "Stop, wait a moment please."


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0


def said_by_caller(server) -> list[str]:
    """What the server transcribed from callers (this server logs transcripts on purpose)."""
    return re.findall(r"session \S+ user: (.*)", server.log_path.read_text())


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory):
    sip_port = _free_udp_port()
    running = start_server(tmp_path_factory.mktemp("phone-server"), VP_SERVER_MAX_SESSIONS="4",
                           VP_SERVER_LOG_TRANSCRIPTS="true", VP_TELEPHONY_SIP_PORT=str(sip_port))
    running.sip_uri = f"sip:assistant@127.0.0.1:{sip_port}"
    yield running
    stop_server(running)


def reply_of(mark_name: str) -> str:
    return mark_name.rsplit("-", 1)[0]  # marks are named vp-<response id>-<sequence>


async def test_twilio_call_gets_a_spoken_answer_and_a_barge_in_clears_the_phone(phone_server, piper_say):
    question, rate_hz = read_wav(piper_say(QUESTION, lead_s=0.5, tail_s=0.2))
    story, _ = read_wav(piper_say(LONG_QUESTION, lead_s=0.2, tail_s=0.2))
    stop, _ = read_wav(piper_say(INTERRUPTION, lead_s=0.0, tail_s=0.0))
    url = f"ws://127.0.0.1:{phone_server.port}/v1/twilio"
    async with TwilioFarEnd(url) as phone:
        phone.say(question, rate_hz, "question")
        await phone.wait_for(lambda heard: heard.media, 90)
        await phone.wait_quiet(quiet_s=1.5, timeout_s=120)
        answer = phone.heard.played_audio()
        marks_before_story = len(phone.heard.marks_echoed)
        media_before_story = len(phone.heard.media)

        phone.say(story, rate_hz, "story")
        await phone.wait_for(lambda heard: len(heard.media) > media_before_story + 25, 90)  # 0.5 s of it
        stop_said_t = time.monotonic()  # the story's speech was all sent: this goes out at once
        phone.say(stop, rate_hz, "stop")
        await phone.wait_for(lambda heard: heard.clears, 30)
        cleared_t = phone.heard.clears[0]
        await asyncio.sleep(1.0)
    heard = phone.heard
    first_reply_t = heard.first_media_after(heard.speech_sent["question"])
    assert first_reply_t is not None
    assert any({"capital", "france"} <= words(line) for line in said_by_caller(phone_server))
    assert len(answer) > 8000 * 0.3 and rms(answer) > 0.01  # a spoken reply, not silence
    assert 0 < marks_before_story <= len(heard.marks_received)  # marks came with it and were echoed
    assert stop_said_t < cleared_t  # the clear answered the caller's speech over the reply
    cleared_reply = reply_of([name for t, name in heard.marks_received if t < cleared_t][-1])
    assert cleared_reply not in {reply_of(name) for t, name in heard.marks_received if t > cleared_t}
    status, metrics = phone_server.get("/metrics")
    assert status == 200 and re.search(r'vp_turns_total\{status="completed"\} [1-9]', metrics)
    assert re.search(r"vp_interruptions_total [1-9]", metrics)
    print(f"twilio voice-to-voice: {1000 * (first_reply_t - heard.speech_sent['question']):.0f} ms")


def transcribe(audio: np.ndarray, rate_hz: int) -> str:
    from faster_whisper import WhisperModel

    from voice_pipeline.engines.registry import whisper_model_dir

    model = WhisperModel(whisper_model_dir("tiny.en"), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(resample(audio, rate_hz, 16_000), beam_size=1, language="en")
    return " ".join(segment.text for segment in segments)


async def test_sip_phone_asks_a_spoken_question_and_records_a_spoken_answer(phone_server, piper_say, tmp_path):
    question = piper_say(QUESTION, lead_s=1.0, tail_s=0.2)
    said_before = len(said_by_caller(phone_server))
    result = await run_baresip_call(question, tmp_path / "heard.wav", phone_server.sip_uri, 30.0, tmp_path)
    assert result.established, result.log[-2000:]
    assert result.sent is not None
    heard, rate_hz = read_wav(result.recording)
    sent, _ = read_wav(result.sent)
    heard_from_caller = said_by_caller(phone_server)[said_before:]
    assert any({"capital", "france"} <= words(line) for line in heard_from_caller), (heard_from_caller, result.log[-1500:])
    question_end_s = speech_end_s(sent)
    answer_start_s = first_sound_s(heard, question_end_s)
    assert question_end_s > 1.0 and answer_start_s is not None
    answer = heard[int(answer_start_s * rate_hz):]
    assert rms(answer) > 0.01 and np.count_nonzero(np.abs(answer) > 0.05) > 0.2 * rate_hz
    text = transcribe(answer, rate_hz)
    assert words(text), text  # a spoken answer, understood by a second speech recogniser
    print(f"sip voice-to-voice: {1000 * (answer_start_s - question_end_s):.0f} ms")
