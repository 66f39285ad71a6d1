"""The outbox tells the client when it holds a playing reply back (`output_audio_buffer.paused`) and
when that reply goes on (`.resumed`), ahead of any audio, and only for a reply the client is playing."""

import asyncio

import numpy as np

from voice_pipeline.session.outbox import Outbox

from .fakes import RecordingSink

RATE_HZ = 8_000


async def _running(outbox: Outbox, sink: RecordingSink) -> asyncio.Task[None]:
    return asyncio.create_task(outbox.run(sink))


async def _close(outbox: Outbox, writer: asyncio.Task[None]) -> None:
    outbox.close()
    await asyncio.wait_for(writer, 5.0)


def _audio_ms(sink: RecordingSink, start: int = 0, end: int | None = None) -> float:
    return sum(item.duration_ms for kind, item in sink.items[start:end] if kind == "audio")  # type: ignore[attr-defined]


async def test_a_pause_is_announced_before_any_more_audio_and_the_resume_goes_on_where_it_stopped():
    outbox, sink = Outbox("s1", frame_ms=20, lead_ms=40), RecordingSink()
    writer = await _running(outbox, sink)
    outbox.open_reply("r1", RATE_HZ)
    await outbox.add_audio("r1", np.zeros(RATE_HZ, np.float32))  # 1 s
    await sink.wait_for("output_audio_buffer.started")
    await asyncio.sleep(0.1)
    outbox.pause("t2")
    paused = await sink.wait_for("output_audio_buffer.paused")
    paused_at = sink.items.index(("event", paused))
    await asyncio.sleep(0.15)  # nothing is sent while paused
    assert _audio_ms(sink, paused_at) == 0.0
    sent_before_ms = _audio_ms(sink, 0, paused_at)
    outbox.resume()
    resumed = await sink.wait_for("output_audio_buffer.resumed")
    outbox.end_reply("r1")
    await asyncio.wait_for(outbox.wait_sent("r1"), 5.0)
    await _close(outbox, writer)
    assert paused.response_id == resumed.response_id == "r1" and paused.turn_id == "t2"
    # what the client holds when it pauses is exactly what was sent; the resume takes up from there
    assert paused.data["audio_ms"] == resumed.data["audio_ms"] == round(sent_before_ms)
    resumed_at = sink.items.index(("event", resumed))
    assert _audio_ms(sink, paused_at, resumed_at) == 0.0
    assert round(_audio_ms(sink)) == 1000  # nothing lost, nothing repeated
    assert sink.types().count("output_audio_buffer.paused") == sink.types().count("output_audio_buffer.resumed") == 1


async def test_a_flushed_reply_is_not_resumed_and_a_second_pause_is_not_announced_twice():
    outbox, sink = Outbox("s1", frame_ms=20, lead_ms=40), RecordingSink()
    writer = await _running(outbox, sink)
    outbox.open_reply("r1", RATE_HZ)
    await outbox.add_audio("r1", np.zeros(RATE_HZ, np.float32))
    await sink.wait_for("output_audio_buffer.started")
    outbox.pause("t2")
    outbox.pause("t2")
    await sink.wait_for("output_audio_buffer.paused")
    outbox.flush("r1")  # a barge-in: the reply's clear tells the client to drop what it holds
    outbox.resume()
    await asyncio.sleep(0.05)
    await _close(outbox, writer)
    assert sink.types().count("output_audio_buffer.paused") == 1
    assert "output_audio_buffer.resumed" not in sink.types()


async def test_nothing_is_announced_when_no_reply_is_playing_or_all_of_it_was_sent():
    outbox, sink = Outbox("s1", frame_ms=20, lead_ms=40), RecordingSink()
    writer = await _running(outbox, sink)
    outbox.pause("t1")  # no reply at all
    outbox.resume()
    outbox.open_reply("r1", RATE_HZ)
    await outbox.add_audio("r1", np.zeros(RATE_HZ // 10, np.float32))
    outbox.pause("t2")  # queued, not started: the client has nothing of it to pause
    await asyncio.sleep(0.05)
    outbox.resume()
    outbox.end_reply("r1")
    await asyncio.wait_for(outbox.wait_sent("r1"), 5.0)
    outbox.pause("t3")  # all of it sent: the client only plays out its lead
    outbox.resume()
    await asyncio.sleep(0.05)
    await _close(outbox, writer)
    types = sink.types()
    assert "output_audio_buffer.started" in types  # the reply did play
    assert "output_audio_buffer.paused" not in types and "output_audio_buffer.resumed" not in types
