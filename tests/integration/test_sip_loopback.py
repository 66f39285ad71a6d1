"""A real SIP phone (baresip) calls our SIP user agent on 127.0.0.1: audio both ways, hang-up both ways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.integration.sip_phone import run_baresip_call
from voice_pipeline.audio import read_wav, write_wav
from voice_pipeline.telephony.phone_audio import PhoneAudioIn, PhoneAudioOut
from voice_pipeline.telephony.rtp_endpoint import RtpAudio
from voice_pipeline.telephony.sip import SipAgent, SipCall

pytestmark = pytest.mark.integration

CALLER_HZ = 440.0
ASSISTANT_HZ = 1000.0
TTS_RATE_HZ = 22_050


def _tone(freq_hz: float, rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (0.4 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _dominant_hz(audio: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate_hz)[np.argmax(spectrum)])


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0


class ToneAnswerer:
    """Answers, plays a tone as the 'reply' (resampled from a TTS rate), records the caller."""

    def __init__(self, reply_s: float, hang_up_after_reply: bool) -> None:
        self.reply_s, self.hang_up_after_reply = reply_s, hang_up_after_reply
        self.heard: list[np.ndarray] = []
        self.calls: list[SipCall] = []

    async def __call__(self, call: SipCall) -> None:
        self.calls.append(call)
        out = PhoneAudioOut(from_hz=TTS_RATE_HZ)
        reply = _tone(ASSISTANT_HZ, TTS_RATE_HZ, self.reply_s)
        for frame in out.encode(reply) + out.finish():
            call.media.send_audio(frame)
        listener = asyncio.create_task(self._listen(call))
        if self.hang_up_after_reply:
            while call.media.queued_audio_ms > 0 and not call.ended.is_set():
                await asyncio.sleep(0.05)
            call.hangup()
        await call.ended.wait()
        listener.cancel()

    async def _listen(self, call: SipCall) -> None:
        audio_in = PhoneAudioIn()
        while (event := await call.media.read()) is not None:
            if isinstance(event, RtpAudio):
                self.heard.append(audio_in.decode(event.audio_mulaw))


async def _call(tmp_path: Path, answerer: ToneAnswerer, seconds: float):
    wav_in = tmp_path / "caller.wav"
    write_wav(wav_in, _tone(CALLER_HZ, 16_000, 2.0), 16_000)
    agent = SipAgent(answerer, host="127.0.0.1", port=0)
    await agent.start()
    try:
        result = await run_baresip_call(wav_in, tmp_path / "heard.wav", agent.uri, seconds, tmp_path)
    finally:
        await agent.stop()
    heard, rate_hz = read_wav(result.recording)
    return result, heard, rate_hz


async def test_phone_hears_our_reply_and_we_hear_the_phone(tmp_path: Path) -> None:
    answerer = ToneAnswerer(reply_s=2.0, hang_up_after_reply=False)
    result, heard, rate_hz = await _call(tmp_path, answerer, seconds=4.0)
    assert result.established, result.log[-2000:]
    assert rate_hz == 8000
    assert len(heard) > rate_hz * 3  # we send silence between replies: the recording spans the call
    loud = heard[np.abs(heard) > 0.05]
    assert len(loud) > rate_hz  # more than a second of the reply reached the phone
    assert abs(_dominant_hz(heard, rate_hz) - ASSISTANT_HZ) < 10.0
    caller = np.concatenate(answerer.heard)
    assert len(caller) > 16_000 * 2  # the whole call's audio arrived, at 16 kHz
    assert abs(_dominant_hz(caller, 16_000) - CALLER_HZ) < 10.0
    assert _rms(caller[: 16_000 * 2]) > 0.1
    assert answerer.calls[0].ended.is_set()  # baresip's BYE ended the call on our side


async def test_our_hang_up_ends_the_phones_call(tmp_path: Path) -> None:
    answerer = ToneAnswerer(reply_s=1.0, hang_up_after_reply=True)
    result, heard, rate_hz = await _call(tmp_path, answerer, seconds=10.0)
    assert result.established
    assert "terminated" in result.log
    assert result.sent is not None
    sent, _ = read_wav(result.sent)
    assert len(sent) < rate_hz * 5  # the phone's microphone stopped well before its own 10 s hang-up
    assert abs(_dominant_hz(heard, rate_hz) - ASSISTANT_HZ) < 10.0
