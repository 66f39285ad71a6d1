"""A GA `session` object <-> our session fields (protocol/session_config.py), both ways."""

from __future__ import annotations

from typing import Any, Mapping

from voice_pipeline.errors import ProtocolError
from voice_pipeline.protocol.openai_realtime.state import FORMAT_RATES_HZ, PCM, GaState

# Accepted and not acted on: the server has one voice, one model and no tracing or reasoning settings.
_IGNORED = {"model", "max_output_tokens", "tracing", "truncation", "prompt", "include", "reasoning",
            "parallel_tool_calls", "id", "object", "expires_at", "client_secret"}
_EAGERNESS_SILENCE_MS = {"high": 200, "low": 900}  # "medium"/"auto": the server's own endpoint setting


def _fail(message: str) -> ProtocolError:
    return ProtocolError("invalid_session_field", message)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{where} must be an object")
    return value


def _format(value: Any, where: str) -> str:
    kind = _object(value, where).get("type", PCM)
    if kind not in FORMAT_RATES_HZ:
        raise ProtocolError("unsupported_sample_rate", f"{where}.type must be audio/pcm, audio/pcmu or audio/pcma")
    rate = value.get("rate", FORMAT_RATES_HZ[kind])
    if rate != FORMAT_RATES_HZ[kind]:
        raise ProtocolError("unsupported_sample_rate", f"{where}.rate must be {FORMAT_RATES_HZ[kind]} for {kind}")
    return str(kind)


def _turn_detection(value: Any, state: GaState) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our turn_detection, state changes); server_vad keeps its numbers, semantic_vad maps eagerness."""
    if value is None:
        return {"type": "none"}, {"turn_detection_type": "none", "eagerness": None}
    value = _object(value, "audio.input.turn_detection")
    kind = value.get("type", "server_vad")
    ours: dict[str, Any] = {"type": "server_vad"}
    if kind == "server_vad":
        if "threshold" in value:
            threshold = value["threshold"]
            if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
                raise _fail("audio.input.turn_detection.threshold must be between 0 and 1")
            ours["threshold"] = min(0.95, max(0.05, float(threshold)))
        if "silence_duration_ms" in value:
            silence = value["silence_duration_ms"]
            if not isinstance(silence, int) or isinstance(silence, bool) or silence < 0:
                raise _fail("audio.input.turn_detection.silence_duration_ms must be a non-negative integer")
            ours["silence_duration_ms"] = min(3000, max(100, silence))
        return ours, {"turn_detection_type": "server_vad", "eagerness": None}
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        if eagerness not in ("low", "medium", "high", "auto"):
            raise _fail("audio.input.turn_detection.eagerness must be low, medium, high or auto")
        if eagerness in _EAGERNESS_SILENCE_MS:
            ours["silence_duration_ms"] = _EAGERNESS_SILENCE_MS[eagerness]
        return ours, {"turn_detection_type": "semantic_vad", "eagerness": eagerness}
    raise _fail("audio.input.turn_detection.type must be server_vad or semantic_vad (or null)")


def _tool(tool: Any) -> dict[str, Any]:
    tool = _object(tool, "each tool")
    if tool.get("type", "function") != "function":
        raise _fail("only function tools are supported (no MCP servers)")
    return {key: tool[key] for key in ("type", "name", "description", "parameters") if key in tool}


def session_fields(ga: Any, state: GaState) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our session fields for a GA `session` object, and the GaState changes that go with them."""
    ga = _object(ga, "session")
    if ga.get("type", "realtime") != "realtime":
        raise _fail("only realtime sessions are supported (not transcription sessions)")
    unknown = set(ga) - _IGNORED - {"type", "instructions", "output_modalities", "audio", "tools", "tool_choice"}
    if unknown:
        raise _fail(f"unknown parameter: 'session.{sorted(unknown)[0]}'")
    ours: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    if isinstance(ga.get("model"), str):
        changes["model"] = ga["model"]
    for key in ("instructions", "output_modalities", "tool_choice"):
        if key in ga:
            ours[key] = ga[key]
    if "tools" in ga:
        if not isinstance(ga["tools"], list):
            raise _fail("session.tools must be a list")
        ours["tools"] = [_tool(tool) for tool in ga["tools"]]
    audio = _object(ga.get("audio", {}), "session.audio")
    if set(audio) - {"input", "output"}:
        raise _fail("session.audio has only input and output")
    given = _object(audio.get("input", {}), "audio.input")
    if set(given) - {"format", "transcription", "turn_detection", "noise_reduction"}:
        raise _fail(f"unknown parameter in audio.input: {sorted(set(given))}")
    if "format" in given:
        changes["input_format"] = _format(given["format"], "audio.input.format")
        ours["input_audio_format"] = {"encoding": "pcm16", "sample_rate": FORMAT_RATES_HZ[changes["input_format"]]}
    if "transcription" in given:
        transcription = given["transcription"]
        changes["transcription"] = None if transcription is None else dict(_object(transcription, "audio.input.transcription"))
    if "turn_detection" in given:
        ours["turn_detection"], more = _turn_detection(given["turn_detection"], state)
        changes.update(more)
    output = _object(audio.get("output", {}), "audio.output")
    if set(output) - {"format", "voice", "speed"}:
        raise _fail(f"unknown parameter in audio.output: {sorted(set(output))}")
    if "format" in output:
        changes["output_format"] = _format(output["format"], "audio.output.format")
        ours["output_audio_format"] = {"encoding": "pcm16", "sample_rate": FORMAT_RATES_HZ[changes["output_format"]]}
    if isinstance(output.get("voice"), str):
        changes["voice"] = output["voice"]
    return ours, changes


def ga_session(ours: Mapping[str, Any], state: GaState, session_id: str) -> dict[str, Any]:
    """The effective session, in GA shape, from our `session.created/updated` payload."""
    detection = ours.get("turn_detection", {})
    turn_detection: dict[str, Any] | None
    if detection.get("type") == "none":
        turn_detection = None
    elif state.turn_detection_type == "semantic_vad":
        turn_detection = {"type": "semantic_vad", "eagerness": state.eagerness or "auto", "create_response": True,
                          "interrupt_response": True}
    else:
        turn_detection = {"type": "server_vad", "threshold": detection.get("threshold"),
                          "silence_duration_ms": detection.get("silence_duration_ms"), "prefix_padding_ms": 300,
                          "create_response": True, "interrupt_response": True, "idle_timeout_ms": None}
    return {
        "type": "realtime", "object": "realtime.session", "id": f"sess_{session_id}", "model": state.model,
        "output_modalities": ours.get("output_modalities", ["audio"]), "instructions": ours.get("instructions", ""),
        "audio": {
            "input": {"format": _format_object(state.input_format), "transcription": state.transcription,
                      "noise_reduction": None, "turn_detection": turn_detection},
            "output": {"format": _format_object(state.output_format), "voice": ours.get("voice"), "speed": 1.0},
        },
        "tools": ours.get("tools", []), "tool_choice": ours.get("tool_choice", "auto"),
        "max_output_tokens": "inf", "tracing": None, "truncation": "auto", "prompt": None, "include": None,
    }


def _format_object(kind: str) -> dict[str, Any]:
    return {"type": kind, "rate": FORMAT_RATES_HZ[kind]} if kind == PCM else {"type": kind}
