"""G.711 mu-law encode/decode in numpy (the standard library's audioop is gone in Python 3.13).

The tables follow the reference G.711 code (Sun's g711.c, which audioop also used): a 14-bit
magnitude with a bias of 33, eight segments of sixteen steps, and every bit inverted on the wire.
"""

from __future__ import annotations

import numpy as np

_BIAS_14 = 0x21
_CLIP_14 = 8159
_SEGMENT_ENDS_14 = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
MULAW_SILENCE = 0xFF  # the code for a zero sample


def _encode_int16(pcm: np.ndarray) -> np.ndarray:
    """Reference G.711 encoder, vectorised: int16 samples -> uint8 codes."""
    value = pcm.astype(np.int32) >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _CLIP_14) + _BIAS_14
    segment = np.searchsorted(_SEGMENT_ENDS_14, magnitude, side="left")
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, segment << 4 | mantissa)  # past the last segment: the maximum
    return (code ^ mask).astype(np.uint8)


def _decode_codes(codes: np.ndarray) -> np.ndarray:
    """Reference G.711 decoder, vectorised: uint8 codes -> int16 samples."""
    inverted = ~codes.astype(np.int32) & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + 0x84) << ((inverted & 0x70) >> 4)
    return np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


_ENCODE_TABLE = _encode_int16(np.arange(-32768, 32768, dtype=np.int32))  # index = sample + 32768
_DECODE_TABLE = _decode_codes(np.arange(256, dtype=np.uint8))


def encode_mulaw(pcm16: np.ndarray) -> bytes:
    """Signed 16-bit samples (any integer array) -> mu-law bytes, one per sample."""
    samples = np.asarray(pcm16, dtype=np.int16).astype(np.int32)
    return _ENCODE_TABLE[samples + 32768].tobytes()


def decode_mulaw(data: bytes) -> np.ndarray:
    """Mu-law bytes -> signed 16-bit samples (int16 array)."""
    return _DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


def float_to_mulaw(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] -> mu-law bytes (clipped, rounded to the nearest 16-bit sample)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32) * 32768.0, -32768.0, 32767.0)
    return encode_mulaw(np.rint(scaled).astype(np.int16))


def mulaw_to_float(data: bytes) -> np.ndarray:
    """Mu-law bytes -> float32 audio in [-1, 1)."""
    return decode_mulaw(data).astype(np.float32) / 32768.0


def mulaw_silence(n_samples: int) -> bytes:
    return bytes([MULAW_SILENCE]) * n_samples
