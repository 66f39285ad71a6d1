"""Per-session settings a client may change (`session.start` / `session.update`), validated."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from voice_pipeline.app.settings import Settings
from voice_pipeline.audio import SUPPORTED_RATES_HZ
from voice_pipeline.errors import ProtocolError

_MAX_INSTRUCTIONS_CHARS = 4000
_MAX_TOOLS = 32
_MAX_TOOL_SCHEMA_CHARS = 16_000
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MODALITIES = (("audio",), ("text",))


@dataclass(frozen=True)
class SessionConfig:
    input_rate_hz: int = 16_000
    output_rate_hz: int = 22_050
    voice: str = "en_US-joe-medium"
    instructions: str = ""
    vad_enabled: bool = True
    vad_threshold: float = 0.5
    silence_duration_ms: int = 300
    partials: bool = True
    tools: tuple[Mapping[str, Any], ...] = ()  # client functions: {type, name, description, parameters}
    tool_choice: str | Mapping[str, Any] = "auto"  # auto | none | required | {type: function, name}
    output_modalities: tuple[str, ...] = ("audio",)  # ("text",): replies are text only, no TTS

    @property
    def audio_out(self) -> bool:
        return "audio" in self.output_modalities

    @property
    def tools_on(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @classmethod
    def from_settings(cls, settings: Settings, instructions: str) -> "SessionConfig":
        return cls(
            output_rate_hz=settings.tts.output_sample_rate,
            voice=settings.tts.voice,
            instructions=instructions,
            vad_threshold=settings.vad.threshold,
            silence_duration_ms=settings.vad.endpoint_silence_ms,
            partials=settings.stt.partials,
        )

    def updated(self, data: Mapping[str, Any]) -> "SessionConfig":
        """A copy with the wire-format fields in `data` applied; raises ProtocolError if invalid."""
        if not isinstance(data, Mapping):
            raise ProtocolError("invalid_session_field", "`session` must be an object")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            handler = _FIELDS.get(key)
            if handler is None:
                raise ProtocolError("invalid_session_field", f"unknown session field {key!r}")
            changes.update(handler(self, value))
        return dataclasses.replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        return {
            "input_audio_format": {"encoding": "pcm16", "sample_rate": self.input_rate_hz},
            "output_audio_format": {"encoding": "pcm16", "sample_rate": self.output_rate_hz},
            "voice": self.voice,
            "instructions": self.instructions,
            "turn_detection": (
                {"type": "server_vad", "threshold": self.vad_threshold, "silence_duration_ms": self.silence_duration_ms}
                if self.vad_enabled
                else {"type": "none"}
            ),
            "transcription": {"partials": self.partials},
            "tools": [dict(tool) for tool in self.tools],
            "tool_choice": self.tool_choice if isinstance(self.tool_choice, str) else dict(self.tool_choice),
            "output_modalities": list(self.output_modalities),
        }


def _audio_format(key: str, field_name: str) -> Callable[[SessionConfig, Any], dict[str, Any]]:
    def apply(_config: SessionConfig, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ProtocolError("invalid_session_field", f"{key} must be an object")
        unknown = set(value) - {"encoding", "sample_rate"}
        if unknown:
            raise ProtocolError("invalid_session_field", f"unknown {key} field(s): {sorted(unknown)}")
        if value.get("encoding", "pcm16") != "pcm16":
            raise ProtocolError("invalid_session_field", f"{key}.encoding must be 'pcm16'")
        rate = value.get("sample_rate", 16_000 if field_name == "input_rate_hz" else 22_050)
        if not isinstance(rate, int) or isinstance(rate, bool) or rate not in SUPPORTED_RATES_HZ:
            raise ProtocolError(
                "unsupported_sample_rate", f"{key}.sample_rate {rate!r} is not one of {list(SUPPORTED_RATES_HZ)}"
            )
        return {field_name: rate}

    return apply


def _voice(config: SessionConfig, value: Any) -> dict[str, Any]:
    if value != config.voice:
        raise ProtocolError("invalid_session_field", f"voice {value!r} is not loaded; this server has {config.voice!r}")
    return {}


def _instructions(_config: SessionConfig, value: Any) -> dict[str, Any]:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_INSTRUCTIONS_CHARS:
        raise ProtocolError("invalid_session_field", f"instructions must be 1-{_MAX_INSTRUCTIONS_CHARS} characters")
    return {"instructions": value.strip()}


def _turn_detection(config: SessionConfig, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or value.get("type") not in ("server_vad", "none"):
        raise ProtocolError("invalid_session_field", "turn_detection.type must be 'server_vad' or 'none'")
    unknown = set(value) - {"type", "threshold", "silence_duration_ms"}
    if unknown:
        raise ProtocolError("invalid_session_field", f"unknown turn_detection field(s): {sorted(unknown)}")
    threshold = value.get("threshold", config.vad_threshold)
    silence_ms = value.get("silence_duration_ms", config.silence_duration_ms)
    if not isinstance(threshold, (int, float)) or not 0.05 <= threshold <= 0.95:
        raise ProtocolError("invalid_session_field", "turn_detection.threshold must be in [0.05, 0.95]")
    if not isinstance(silence_ms, int) or not 100 <= silence_ms <= 3000:
        raise ProtocolError("invalid_session_field", "turn_detection.silence_duration_ms must be 100-3000")
    return {"vad_enabled": value["type"] == "server_vad", "vad_threshold": float(threshold), "silence_duration_ms": silence_ms}


def _transcription(_config: SessionConfig, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or set(value) - {"partials"} or not isinstance(value.get("partials", True), bool):
        raise ProtocolError("invalid_session_field", "transcription must be {\"partials\": true|false}")
    return {"partials": value.get("partials", True)}


def _tools(_config: SessionConfig, value: Any) -> dict[str, Any]:
    if not isinstance(value, list) or len(value) > _MAX_TOOLS:
        raise ProtocolError("invalid_session_field", f"tools must be a list of at most {_MAX_TOOLS} functions")
    tools = []
    for tool in value:
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            raise ProtocolError("invalid_session_field", "each tool must be {type: 'function', name, description, parameters}")
        unknown = set(tool) - {"type", "name", "description", "parameters"}
        name, description = tool.get("name"), tool.get("description", "")
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        if unknown or not isinstance(name, str) or not _TOOL_NAME.match(name) or not isinstance(description, str):
            raise ProtocolError("invalid_session_field", "a tool needs a name of 1-64 letters, digits, '_' or '-' "
                                "and may have a description and parameters (a JSON schema object), nothing else")
        if not isinstance(parameters, Mapping) or len(json.dumps(parameters)) > _MAX_TOOL_SCHEMA_CHARS:
            raise ProtocolError("invalid_session_field", f"tool {name!r}: parameters must be a JSON schema object "
                                f"under {_MAX_TOOL_SCHEMA_CHARS} characters")
        tools.append({"type": "function", "name": name, "description": description, "parameters": dict(parameters)})
    if len({tool["name"] for tool in tools}) != len(tools):
        raise ProtocolError("invalid_session_field", "tool names must be unique")
    return {"tools": tuple(tools)}


def _tool_choice(_config: SessionConfig, value: Any) -> dict[str, Any]:
    if value in ("auto", "none", "required"):
        return {"tool_choice": value}
    if (isinstance(value, Mapping) and value.get("type") == "function" and set(value) == {"type", "name"}
            and isinstance(value.get("name"), str)):
        return {"tool_choice": {"type": "function", "name": value["name"]}}
    raise ProtocolError("invalid_session_field", "tool_choice must be 'auto', 'none', 'required' or "
                        "{type: 'function', name}")


def _output_modalities(_config: SessionConfig, value: Any) -> dict[str, Any]:
    if not isinstance(value, list) or tuple(value) not in MODALITIES:
        raise ProtocolError("invalid_session_field", "output_modalities must be [\"audio\"] or [\"text\"]")
    return {"output_modalities": tuple(value)}


_FIELDS = {
    "input_audio_format": _audio_format("input_audio_format", "input_rate_hz"),
    "output_audio_format": _audio_format("output_audio_format", "output_rate_hz"),
    "voice": _voice,
    "instructions": _instructions,
    "turn_detection": _turn_detection,
    "transcription": _transcription,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "output_modalities": _output_modalities,
}
