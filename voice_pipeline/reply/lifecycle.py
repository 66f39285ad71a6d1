"""The reply lifecycle as a pure state machine: held or live, then committed, discarded or done.

A speculative reply starts HELD: prepared during the endpoint wait, its events kept back and its
audio queued unsent. The endpoint commits it (LIVE: everything held goes out, in order) or the
user's resumed speech discards it (DISCARDED: nothing of it ever leaves, and it never happened in
the history). A reply started after the endpoint is LIVE from the start. A LIVE reply ends DONE,
whether it finished by itself or was interrupted. No I/O here: the handle acts on the answers.
"""

from __future__ import annotations

from enum import Enum


class ReplyState(Enum):
    HELD = "held"
    LIVE = "live"
    DISCARDED = "discarded"
    DONE = "done"


class Delivery(Enum):
    """What happens to an event the reply emits now."""

    SEND = "send"
    HOLD = "hold"
    DROP = "drop"


class ReplyLifecycle:
    def __init__(self, held: bool) -> None:
        self.state = ReplyState.HELD if held else ReplyState.LIVE

    @property
    def held(self) -> bool:
        return self.state is ReplyState.HELD

    @property
    def speaks(self) -> bool:
        """Whether the reply is the session's: its events are sent, it writes the history, it is counted."""
        return self.state in (ReplyState.LIVE, ReplyState.DONE)

    def delivery(self) -> Delivery:
        if self.state is ReplyState.HELD:
            return Delivery.HOLD
        if self.state is ReplyState.DISCARDED:
            return Delivery.DROP
        return Delivery.SEND

    def commit(self) -> bool:
        """The endpoint confirmed the turn. True if held events and audio must go out now."""
        if self.state is not ReplyState.HELD:
            return False
        self.state = ReplyState.LIVE
        return True

    def discard(self) -> bool:
        """The user went on. True if the prepared reply must be thrown away now."""
        if self.state is not ReplyState.HELD:
            return False
        self.state = ReplyState.DISCARDED
        return True

    def interrupt(self) -> bool:
        """Barge-in, cancel, reset or new input. True if a live reply must be stopped and silenced."""
        return self.state is ReplyState.LIVE

    def finish(self) -> bool:
        """The reply's task has ended. True if it ends as the session's reply (history, events, metrics)."""
        if self.state is not ReplyState.LIVE:
            return False
        self.state = ReplyState.DONE
        return True
