"""What both directions of one OpenAI Realtime connection share: formats, item ids, pending client items."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

PCM = "audio/pcm"
PCMU = "audio/pcmu"
PCMA = "audio/pcma"
FORMAT_RATES_HZ = {PCM: 24_000, PCMU: 8_000, PCMA: 8_000}


@dataclass
class GaState:
    model: str = "voice-pipeline"
    input_format: str = PCM
    output_format: str = PCM
    transcription: dict[str, Any] | None = field(default_factory=lambda: {"model": "whisper"})
    turn_detection_type: str = "server_vad"  # echoed back: "semantic_vad" maps to our server VAD
    eagerness: str | None = None
    output_text_only: bool = False  # output_modalities ["text"]
    voice: str | None = None  # the voice the client asked for (we have one: ours speaks)
    pending_texts: list[str] = field(default_factory=list)  # user text items waiting for response.create
    last_item_id: str | None = None
    response_items: dict[str, str] = field(default_factory=dict)  # assistant message item id -> our response id
    latest_response_id: str | None = None
    client_event_ids: collections.deque[tuple[str, str]] = field(default_factory=lambda: collections.deque(maxlen=64))
    item_counter: int = 0

    def new_item_id(self) -> str:
        self.item_counter += 1
        return f"item_c{self.item_counter}"

    def client_event_id(self, event_type: str | None) -> str | None:
        """The id of the latest client event of this type (for an error about it)."""
        for kind, event_id in reversed(self.client_event_ids):
            if kind == event_type:
                return event_id
        return None
