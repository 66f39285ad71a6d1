"""OpenAI Realtime (GA) compatibility on /v1/realtime: a per-connection translation at the protocol edge.

GA client events become the session's `Command`s (client_events.py), the session's events
become GA server events (server_events.py), GA session objects map to ours (session_map.py);
`GaState` is what the two directions share for one connection. The session never knows which
protocol its client speaks. See docs/protocol.md, "OpenAI Realtime compatibility".
"""

from __future__ import annotations

from typing import Mapping

from voice_pipeline.protocol.openai_realtime.client_events import Ack, Fail, GaDecoder, Pcm16
from voice_pipeline.protocol.openai_realtime.server_events import GaEncoder
from voice_pipeline.protocol.openai_realtime.state import GaState

SUBPROTOCOL = "realtime"  # what OpenAI's browser samples offer (with openai-insecure-api-key.KEY)

__all__ = ["Ack", "Fail", "GaDecoder", "GaEncoder", "GaState", "Pcm16", "SUBPROTOCOL", "wants_ga"]


def wants_ga(query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """An OpenAI Realtime client: every SDK puts `model` in the URL; browser samples offer the
    `realtime` subprotocol. Our own clients send neither and keep the v1 protocol."""
    offered = {p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")}
    return "model" in query or SUBPROTOCOL in offered or query.get("protocol") == "openai"
