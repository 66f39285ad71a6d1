"""Commands a transport hands to a session, decoded from whatever its wire format is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class StartSession:
    config: Mapping[str, Any]


@dataclass(frozen=True)
class UpdateSession:
    config: Mapping[str, Any]


@dataclass(frozen=True)
class CommitInput:
    pass


@dataclass(frozen=True)
class ClearInput:
    pass


@dataclass(frozen=True)
class UserText:
    text: str


@dataclass(frozen=True)
class TruncateReply:
    response_id: str
    audio_end_ms: float


@dataclass(frozen=True)
class CancelResponse:
    pass


@dataclass(frozen=True)
class ResetConversation:
    pass


@dataclass(frozen=True)
class ToolOutput:
    """The client ran a function the model called: its result, for the reply that continues."""

    call_id: str
    output: str


@dataclass(frozen=True)
class CreateResponse:
    """Reply now: after function outputs, the model continues with them in its context."""


Command = (
    StartSession | UpdateSession | CommitInput | ClearInput | UserText | TruncateReply | CancelResponse
    | ResetConversation | ToolOutput | CreateResponse
)
