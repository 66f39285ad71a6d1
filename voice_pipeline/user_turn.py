"""One user turn as the session tracks it: its id, start, latency marks, transcription and end-of-turn scoring."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .eot import LatestTextScorer
from .metrics import TurnTimeline
from .transcriber import TurnTranscriber


@dataclass
class UserTurn:
    turn_id: str
    start_ms: float
    timeline: TurnTimeline = field(default_factory=TurnTimeline)
    stt: TurnTranscriber | None = None
    eot: LatestTextScorer | None = None
    eot_scored: asyncio.Event = field(default_factory=asyncio.Event)  # this pause's text was scored
