""""auto" speculation and end-of-turn follow a timed STT pass: on when it fits in half the endpoint
window or the STT runs on CUDA, off otherwise; the timings land in the cold-start figures."""

from __future__ import annotations

import asyncio

import pytest

from voice_pipeline.app.compose import stt_within_window


class TimedStt:
    def __init__(self, pass_s: float, device: str = "cpu") -> None:
        self.pass_s, self.device, self.passes, self.warmed = pass_s, device, [], False

    async def warm_up(self) -> None:
        self.warmed = True

    async def transcribe(self, audio, *, final: bool):
        self.passes.append(len(audio))
        await asyncio.sleep(self.pass_s)


@pytest.mark.parametrize("pass_s, device, fast", [(0.01, "cpu", True), (0.25, "cpu", False), (0.25, "cuda", True)])
def test_auto_follows_the_timed_pass(pass_s, device, fast):
    stt, timings = TimedStt(pass_s, device), {}
    assert asyncio.run(stt_within_window(stt, 300, timings)) is fast
    assert stt.warmed and stt.passes == [32_000]
    assert list(timings) == ["stt_warm_ms", "stt_pass_ms"]
