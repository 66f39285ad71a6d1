"""G.711 for OpenAI's audio/pcmu and audio/pcma: mu-law from telephony/mulaw.py, A-law here (Sun's g711.c)."""

from __future__ import annotations

import numpy as np

from voice_pipeline.telephony.mulaw import decode_mulaw, encode_mulaw

_SEGMENT_ENDS_13 = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _encode_alaw_int16(pcm: np.ndarray) -> np.ndarray:
    value = pcm.astype(np.int32) >> 3
    mask = np.where(value >= 0, 0xD5, 0x55)
    magnitude = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(_SEGMENT_ENDS_13, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _decode_alaw_codes(codes: np.ndarray) -> np.ndarray:
    value = codes.astype(np.int32) ^ 0x55
    segment = (value & 0x70) >> 4
    base = (value & 0x0F) << 4
    magnitude = np.where(segment == 0, base + 8, (base + 0x108) << np.maximum(segment - 1, 0))
    return np.where(value & 0x80, magnitude, -magnitude).astype(np.int16)


_ALAW_ENCODE = _encode_alaw_int16(np.arange(-32768, 32768, dtype=np.int32))
_ALAW_DECODE = _decode_alaw_codes(np.arange(256, dtype=np.uint8))


def alaw_to_pcm16(data: bytes) -> bytes:
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def pcm16_to_alaw(pcm16: np.ndarray) -> bytes:
    return _ALAW_ENCODE[np.asarray(pcm16, dtype=np.int16).astype(np.int32) + 32768].tobytes()


def mulaw_to_pcm16(data: bytes) -> bytes:
    return decode_mulaw(data).astype("<i2").tobytes()


def pcm16_to_mulaw(pcm16: np.ndarray) -> bytes:
    return encode_mulaw(pcm16)
