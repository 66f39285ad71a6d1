"""One reply, owned from start to end: its task, its events while held, its audio, its history.

The session asks a handle to commit, discard or interrupt; the handle's lifecycle (lifecycle.py)
decides, and the handle does it: events go out through `emit` (sent, held or dropped), audio is
opened held or live in the outbox and released or flushed with the reply, and a discarded reply
takes back what it wrote to the history. Nothing else decides whether a reply's output is seen.
"""

from __future__ import annotations

import asyncio
import time

from voice_pipeline.protocol.events import EventKind, ServerEvent
from voice_pipeline.reply.lifecycle import Delivery, ReplyLifecycle
from voice_pipeline.reply.speaking import ReplyRecord
from voice_pipeline.session.conversation import Conversation
from voice_pipeline.session.outbox import Outbox


class ReplyHandle:
    def __init__(self, session_id: str, turn_id: str, outbox: Outbox, conversation: Conversation, held: bool) -> None:
        self.session_id, self.turn_id = session_id, turn_id
        self.lifecycle = ReplyLifecycle(held)
        self.task: asyncio.Task[None] | None = None
        self.record: ReplyRecord | None = None  # the reply being spoken, once it has a response id
        self.response_ids: list[str] = []
        self.held_events: list[ServerEvent] = []
        self._outbox, self._conversation = outbox, conversation
        self._history_len = len(conversation.history)  # to take back a discarded reply's turn
        self._cpu_start_s = time.process_time()

    @property
    def held(self) -> bool:
        return self.lifecycle.held

    @property
    def speaks(self) -> bool:
        return self.lifecycle.speaks

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def emit(self, event: ServerEvent) -> None:
        match self.lifecycle.delivery():
            case Delivery.SEND:
                self._outbox.emit(event)
            case Delivery.HOLD:
                self.held_events.append(event)
            case Delivery.DROP:
                pass

    def event(self, kind: EventKind, response_id: str | None = None, **data: object) -> None:
        self.emit(ServerEvent(kind, self.session_id, turn_id=self.turn_id, response_id=response_id, data=data))

    def open_audio(self, record: ReplyRecord, sample_rate_hz: int) -> None:
        """The reply has a response id: its audio goes to the outbox, held while the reply is."""
        self.record = record
        self.response_ids.append(record.response_id)
        self._outbox.open_reply(record.response_id, sample_rate_hz, held=self.held)

    def commit(self) -> None:
        if not self.lifecycle.commit():
            return
        for event in self.held_events:
            self._outbox.emit(event)
        self.held_events.clear()
        for response_id in self.response_ids:
            self._outbox.release(response_id)

    def discard(self) -> float:
        """Throw a held reply away at once; returns the CPU seconds it cost (all threads: an estimate)."""
        if not self.lifecycle.discard():
            return 0.0
        if self.task is not None:
            self.task.cancel()
        for response_id in self.response_ids:
            self._outbox.flush(response_id)
        self.held_events.clear()
        del self._conversation.history[self._history_len :]
        return max(0.0, time.process_time() - self._cpu_start_s)

    def interrupt(self, reason: str) -> bool:
        """Stop a live reply and silence what it queued; True if it was running."""
        if not self.lifecycle.interrupt() or not self.running:
            return False
        assert self.task is not None
        self.task.cancel()
        if self.record is not None:  # it had started speaking: silence it now, before anything else is sent
            self._outbox.flush(self.record.response_id)
            self.emit(ServerEvent(EventKind.OUTPUT_AUDIO_CLEARED, self.session_id,
                                  response_id=self.record.response_id, data={"reason": reason}))
        return True

    def finish(self) -> bool:
        """The reply's task is ending: True if it ends as the session's reply (write history, send done)."""
        return self.lifecycle.finish()
