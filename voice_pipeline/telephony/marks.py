"""What the caller has actually heard, from the marks a media-stream provider echoes back.

The bridge counts the reply audio it sends, places a named mark after it from time to time, and
the provider echoes each mark once everything before it has been played. On a barge-in the bridge
sends `clear`; providers then echo the marks still queued at once, so those echoes are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlayedPosition:
    heard_ms: float  # reply audio confirmed played (a lower bound)
    sent_ms: float  # reply audio sent to the provider


class MarkTracker:
    """Turns sent audio, sent marks and echoed marks into milliseconds heard, per reply."""

    def __init__(self, prefix: str = "vp") -> None:
        self._prefix = prefix
        self._reply_id = ""
        self._sequence = 0
        self._sent_ms = 0.0
        self._heard_ms = 0.0
        self._pending: dict[str, float] = {}  # mark name -> audio sent before it (ms)

    def start_reply(self, reply_id: str) -> None:
        """A new reply begins: positions count from zero again; old marks no longer count."""
        self._reply_id = reply_id
        self._sent_ms = self._heard_ms = 0.0
        self._pending.clear()

    def audio_sent(self, duration_ms: float) -> None:
        self._sent_ms += duration_ms

    def place_mark(self) -> str:
        """Name of a mark to send now, right after the audio counted so far."""
        self._sequence += 1
        name = f"{self._prefix}-{self._reply_id}-{self._sequence}"
        self._pending[name] = self._sent_ms
        return name

    def mark_played(self, name: str) -> bool:
        """An echoed mark; returns whether it was one of ours still pending (and so counted)."""
        position_ms = self._pending.pop(name, None)
        if position_ms is None:
            return False
        self._heard_ms = max(self._heard_ms, position_ms)
        for earlier, earlier_ms in list(self._pending.items()):
            if earlier_ms <= position_ms:  # marks are played in order: earlier ones are done too
                del self._pending[earlier]
        return True

    def clear(self) -> PlayedPosition:
        """Barge-in: the provider's buffer is being cleared. Returns what was heard; forgets the rest."""
        position = self.position
        self._pending.clear()
        self._sent_ms = self._heard_ms
        return position

    @property
    def position(self) -> PlayedPosition:
        return PlayedPosition(self._heard_ms, self._sent_ms)

    @property
    def pending_marks(self) -> int:
        return len(self._pending)

    @property
    def unplayed_ms(self) -> float:
        """Audio sent but not yet confirmed played: the far end's buffer, at most."""
        return self._sent_ms - self._heard_ms
