"""Scheduling of a turn's STT passes: partial spacing, early final, reuse and discard."""

import asyncio

import numpy as np
import pytest

from voice_pipeline.engines.base import Transcript
from voice_pipeline.session.transcription import TurnTranscriber


class GatedStt:
    """Each pass waits until the test releases it; records the audio length it saw."""

    name = "gated"

    def __init__(self):
        self.calls: list[tuple[bool, int]] = []
        self.gates: list[asyncio.Event] = []

    async def transcribe(self, audio, *, final):
        self.calls.append((final, len(audio)))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return Transcript(f"pass {len(self.calls)}", final, len(audio) / 16)

    async def warm_up(self):
        pass


def audio(start_ms, end_ms):
    return np.zeros(int(16 * (end_ms - start_ms)), dtype=np.float32)


def make(stt, partials=True, interval_ms=500):
    seen = []
    spawn = asyncio.get_running_loop().create_task
    transcriber = TurnTranscriber(stt, audio, 0.0, spawn, interval_ms, seen.append if partials else None)
    return transcriber, seen


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_partials_are_spaced_and_never_overlap():
    stt = GatedStt()
    transcriber, seen = make(stt)
    transcriber.maybe_partial(400)  # too early
    transcriber.maybe_partial(600)
    await settle()
    transcriber.maybe_partial(1200)  # one still running
    assert len(stt.calls) == 1
    stt.gates[0].set()
    await settle()
    assert seen == ["pass 1"]
    transcriber.maybe_partial(1200)
    await settle()
    assert stt.calls == [(False, 600 * 16), (False, 1200 * 16)]


async def test_partials_off_means_no_partial_passes():
    stt = GatedStt()
    transcriber, _ = make(stt, partials=False)
    transcriber.maybe_partial(5000)
    await settle()
    assert stt.calls == []


async def test_pause_starts_the_final_pass_and_endpoint_uses_it():
    stt = GatedStt()
    transcriber, _ = make(stt, partials=False)
    transcriber.pause_started(speech_end_ms=1000, now_ms=1096)
    final = transcriber.final(speech_end_ms=1300, now_ms=1400)
    await settle()
    assert stt.calls == [(True, 1096 * 16)]
    stt.gates[0].set()
    assert (await final).text == "pass 1"


async def test_resumed_speech_discards_the_early_final():
    stt = GatedStt()
    transcriber, _ = make(stt, partials=False)
    transcriber.pause_started(1000, 1096)
    await settle()
    transcriber.speech_resumed()
    assert transcriber.discarded_finals == 1
    final = transcriber.final(1900, 2000)
    await settle()
    stt.gates[1].set()
    assert (await final).text == "pass 2"


async def test_running_partial_that_covers_the_speech_becomes_the_final():
    stt = GatedStt()
    transcriber, seen = make(stt)
    transcriber.maybe_partial(1096)  # sees all of the speech and the tail a final pass would get
    await settle()
    transcriber.pause_started(speech_end_ms=1000, now_ms=1096)
    final = transcriber.final(1000, 1100)
    stt.gates[0].set()
    assert (await final).text == "pass 1"
    assert transcriber.reused_partial and len(stt.calls) == 1
    assert seen == []  # its text is the final transcript, not a partial


@pytest.mark.parametrize("partial_end_ms", [990, 1000])  # before the end of speech; at it, without the tail
async def test_partial_that_misses_the_end_of_speech_is_not_reused(partial_end_ms):
    stt = GatedStt()
    transcriber, _ = make(stt)
    transcriber.maybe_partial(partial_end_ms)
    await settle()
    transcriber.pause_started(speech_end_ms=1000, now_ms=1096)
    await settle()
    assert not transcriber.reused_partial
    assert stt.calls[-1] == (True, 1096 * 16)
    transcriber.cancel()


@pytest.mark.parametrize("speech_end_ms, now_ms, end_ms", [(1000, 1500, 1100), (1000, 1050, 1050)])
async def test_final_pass_hears_the_speech_and_its_tail_as_far_as_it_has_arrived(speech_end_ms, now_ms, end_ms):
    stt = GatedStt()
    transcriber, _ = make(stt, partials=False)
    transcriber.final(speech_end_ms, now_ms)
    await settle()
    assert stt.calls == [(True, end_ms * 16)]
    transcriber.cancel()


async def test_an_adopted_partial_that_a_batching_stt_dropped_unrun_gives_way_to_a_final_pass():
    class DroppingStt(GatedStt):
        async def transcribe(self, audio, *, final):
            if not final:  # engines/stt_batch.py answers a superseded partial with no words
                await super().transcribe(audio, final=final)
                return Transcript("", False, len(audio) / 16, superseded=True)
            return await super().transcribe(audio, final=final)

    stt = DroppingStt()
    shed = []
    spawn = asyncio.get_running_loop().create_task
    seen = []
    transcriber = TurnTranscriber(stt, audio, 0.0, spawn, 500, seen.append, on_superseded=lambda: shed.append(1))
    transcriber.maybe_partial(1500)
    await settle()
    transcriber.pause_started(speech_end_ms=1000, now_ms=1100)
    assert transcriber.reused_partial
    task = transcriber.final(1000, 1100)
    stt.gates[0].set()  # the batcher answers the partial: dropped
    await settle()
    assert [final for final, _ in stt.calls] == [False, True]  # the final pass ran after all
    stt.gates[-1].set()
    transcript = await task
    assert transcript.text and not transcript.superseded and seen == []
    assert shed == [1]  # counted as a shed partial (vp_shed_total{work="partial"})
