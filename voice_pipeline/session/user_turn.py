"""One user turn as the session tracks it: its id, start, latency marks, transcription and end-of-turn scoring."""

from __future__ import annotations

from dataclasses import dataclass, field

from voice_pipeline.metrics import TurnTimeline
from voice_pipeline.session.end_of_turn import LatestTextScorer
from voice_pipeline.session.transcription import TurnTranscriber


@dataclass
class UserTurn:
    turn_id: str
    start_ms: float
    timeline: TurnTimeline = field(default_factory=TurnTimeline)
    stt: TurnTranscriber | None = None
    eot: LatestTextScorer | None = None


@dataclass
class VoiceTurn(UserTurn):
    """A spoken turn: it always has its transcriber."""

    stt: TurnTranscriber = field(kw_only=True)
