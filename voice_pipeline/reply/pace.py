"""How far a reply's audio is ahead of its playback: whether the reply's next work may wait.

Its listener waits for a reply's first piece. After that the reply's work (the LLM's next tokens,
the next pieces' synthesis) is needed only before the audio already made has played out: it runs
at a lower CPU priority (the LLM pool's later threads through `threads.can_wait`, the TTS's later
lane) while more than `lead_ms` of the reply's audio is left to play, and at full priority again
once less is, so that a busy CPU delays it without the listener hearing a gap.
"""

from __future__ import annotations

from voice_pipeline.metrics import TurnTimeline
from voice_pipeline.protocol.events import now


class ReplyPace:
    def __init__(self, timeline: TurnTimeline, lead_ms: float) -> None:
        self.timeline, self.lead_ms = timeline, lead_ms
        self.first_piece_written = False
        self.audio_ms = 0.0  # synthesized so far

    def can_wait(self) -> bool:
        """Whether nobody waits on the reply's next work now. Called from worker threads too: it
        only reads numbers the event loop writes."""
        if not self.first_piece_written:
            return False
        started_t = self.timeline.marks.get("first_audio_sent")
        if started_t is None:  # the first piece is being synthesized (or its reply held): all of it is ahead
            return True
        return self.audio_ms - 1000.0 * (now() - started_t) > self.lead_ms
