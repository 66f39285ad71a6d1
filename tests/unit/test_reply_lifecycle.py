"""The reply lifecycle (pure) and its handle, without sockets or models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voice_pipeline.protocol.events import EventKind, ServerEvent
from voice_pipeline.reply.handle import ReplyHandle
from voice_pipeline.reply.lifecycle import Delivery, ReplyLifecycle, ReplyState
from voice_pipeline.reply.speaking import ReplyRecord
from voice_pipeline.session.conversation import Conversation
from voice_pipeline.session.outbox import Outbox


def test_a_held_reply_holds_then_sends_once_committed():
    life = ReplyLifecycle(held=True)
    assert life.state is ReplyState.HELD and life.held and not life.speaks
    assert life.delivery() is Delivery.HOLD
    assert not life.interrupt(), "a held reply is discarded, not interrupted"
    assert not life.finish(), "a held reply never ends as the session's reply"
    assert life.commit() and life.state is ReplyState.LIVE and life.speaks
    assert life.delivery() is Delivery.SEND
    assert not life.commit() and not life.discard(), "committed once; too late to discard"
    assert life.interrupt()
    assert life.finish() and life.state is ReplyState.DONE and life.speaks
    assert life.delivery() is Delivery.SEND  # response.done and turn.metrics go out after the end
    assert not life.finish() and not life.interrupt() and not life.commit()


def test_a_discarded_reply_drops_everything_and_never_speaks():
    life = ReplyLifecycle(held=True)
    assert life.discard() and life.state is ReplyState.DISCARDED
    assert life.delivery() is Delivery.DROP and not life.speaks and not life.held
    assert not life.discard() and not life.commit() and not life.interrupt() and not life.finish()


def test_a_live_reply_speaks_from_the_start():
    life = ReplyLifecycle(held=False)
    assert life.state is ReplyState.LIVE and life.delivery() is Delivery.SEND
    assert not life.discard()
    assert life.finish() and life.state is ReplyState.DONE


def _event(kind: EventKind = EventKind.RESPONSE_CREATED) -> ServerEvent:
    return ServerEvent(kind, "s1", turn_id="t1", response_id="r1")


@pytest.fixture()
def parts():
    conversation = Conversation(4)
    conversation.add_user("before")
    conversation.set_reply("earlier reply")
    return Outbox("s1"), conversation


async def _forever() -> None:
    await asyncio.sleep(3600)


async def test_handle_commit_sends_held_events_in_order_and_releases_audio(parts):
    outbox, conversation = parts
    handle = ReplyHandle("s1", "t1", outbox, conversation, held=True)
    handle.open_audio(ReplyRecord("r1"), 16_000)
    handle.emit(_event(EventKind.RESPONSE_CREATED))
    handle.event(EventKind.TRANSCRIPT_FINAL, transcript="hi")
    assert not outbox._control and outbox._by_id["r1"].held
    handle.commit()
    assert [e.kind for e in outbox._control] == [EventKind.RESPONSE_CREATED, EventKind.TRANSCRIPT_FINAL]
    assert not outbox._by_id["r1"].held and not handle.held_events
    handle.commit()  # a second commit changes nothing
    assert len(outbox._control) == 2


async def test_handle_discard_cancels_drops_and_takes_back_the_history(parts):
    outbox, conversation = parts
    handle = ReplyHandle("s1", "t1", outbox, conversation, held=True)
    handle.task = asyncio.create_task(_forever())
    handle.open_audio(ReplyRecord("r1"), 16_000)
    await outbox.add_audio("r1", np.zeros(1600, dtype=np.float32))
    conversation.add_user("what the user had not finished saying")
    handle.emit(_event())
    assert handle.discard() >= 0.0
    await asyncio.sleep(0)
    assert handle.task.cancelled()
    assert [m.content for m in conversation.history] == ["before", "earlier reply"]
    assert not outbox._control and "r1" not in outbox._by_id
    handle.emit(_event())  # late events of a discarded reply go nowhere
    assert not outbox._control and not handle.held_events
    assert handle.discard() == 0.0 and not handle.finish()


async def test_handle_interrupt_silences_a_live_reply_that_started_speaking(parts):
    outbox, conversation = parts
    handle = ReplyHandle("s1", "t1", outbox, conversation, held=False)
    assert not handle.interrupt("barge_in"), "no task yet: nothing to interrupt"
    handle.task = asyncio.create_task(_forever())
    handle.open_audio(ReplyRecord("r1"), 16_000)
    assert handle.interrupt("barge_in")
    await asyncio.sleep(0)
    assert handle.task.cancelled() and not handle.running
    cleared = outbox._control[-1]
    assert cleared.kind is EventKind.OUTPUT_AUDIO_CLEARED and cleared.data == {"reason": "barge_in"}
    assert not handle.interrupt("barge_in"), "already stopped"


async def test_handle_interrupt_before_any_audio_sends_no_clear(parts):
    outbox, conversation = parts
    handle = ReplyHandle("s1", "t1", outbox, conversation, held=False)
    handle.task = asyncio.create_task(_forever())
    assert handle.interrupt("cancelled_by_client")
    await asyncio.sleep(0)
    assert not outbox._control
