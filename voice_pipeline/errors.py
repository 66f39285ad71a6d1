"""The project's small exception tree."""

from __future__ import annotations


class VoicePipelineError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(VoicePipelineError):
    """A setting is unknown or has a value that cannot be used."""


class ProtocolError(VoicePipelineError):
    """A client message broke the protocol; `code` is the wire error code."""

    def __init__(self, code: str, message: str, event_type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_type = event_type


class EngineError(VoicePipelineError):
    """A model engine (STT, LLM, TTS) failed; `recoverable` says whether the session can go on."""

    def __init__(self, stage: str, message: str, recoverable: bool = True) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.recoverable = recoverable
