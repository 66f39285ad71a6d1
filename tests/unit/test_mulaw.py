"""G.711 mu-law against the reference values of the standard's decoder and encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voice_pipeline.telephony.mulaw import (
    MULAW_SILENCE,
    decode_mulaw,
    encode_mulaw,
    float_to_mulaw,
    mulaw_silence,
    mulaw_to_float,
)

# G.711 mu-law: the decoded value of the first code of each segment (mantissa 0), positive side,
# on the 16-bit scale (the standard's 14-bit values 0, 33, 99, 231, 495, 1023, 2079, 4191 times 4).
SEGMENT_STARTS = [0, 132, 396, 924, 1980, 4092, 8316, 16764]
# Quantisation step of each segment on the 16-bit scale.
SEGMENT_STEPS = [8, 16, 32, 64, 128, 256, 512, 1024]


def test_reference_codes_decode_to_known_values() -> None:
    codes = bytes([0x00, 0x80, 0xFF, 0x7F, 0xFE, 0x7E, 0xF0, 0x70])
    assert decode_mulaw(codes).tolist() == [-32124, 32124, 0, 0, 8, -8, 120, -120]


@pytest.mark.parametrize("segment", range(8))
def test_segment_boundaries(segment: int) -> None:
    positive_code = 0xFF ^ (segment << 4)  # inverted bits: sign set = positive, mantissa 0
    negative_code = 0x7F ^ (segment << 4)
    decoded = decode_mulaw(bytes([positive_code, negative_code])).tolist()
    assert decoded == [SEGMENT_STARTS[segment], -SEGMENT_STARTS[segment]]
    next_code = bytes([positive_code - 1])  # mantissa 1 in the same segment
    assert decode_mulaw(next_code)[0] - SEGMENT_STARTS[segment] == SEGMENT_STEPS[segment]


def test_silence_and_extremes_encode() -> None:
    samples = np.array([0, 32767, -32768, 1, -1], dtype=np.int16)
    assert list(encode_mulaw(samples)) == [0xFF, 0x80, 0x00, 0xFF, 0x7E]
    assert mulaw_silence(3) == bytes([MULAW_SILENCE] * 3)
    assert decode_mulaw(mulaw_silence(3)).tolist() == [0, 0, 0]


def test_decode_is_monotonic_within_each_sign() -> None:
    positive = decode_mulaw(bytes(range(0xFF, 0x7F, -1))).astype(np.int32)  # 0xFF .. 0x80
    negative = decode_mulaw(bytes(range(0x7F, -1, -1))).astype(np.int32)  # 0x7F .. 0x00
    assert np.all(np.diff(positive) > 0)
    assert np.all(np.diff(negative) < 0)


def test_every_code_but_negative_zero_round_trips() -> None:
    codes = bytes(code for code in range(256) if code != 0x7F)
    assert encode_mulaw(decode_mulaw(codes)) == codes
    assert encode_mulaw(decode_mulaw(b"\x7f")) == b"\xff"  # -0 comes back as +0


def test_decode_of_encode_is_within_one_quantisation_step() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    decoded = decode_mulaw(encode_mulaw(samples.astype(np.int16))).astype(np.int32)
    # A sample just below a segment start may round up into it: take the larger magnitude's step.
    magnitude = np.maximum(np.minimum(np.abs(samples), 32635), np.abs(decoded))
    segment = np.clip(np.searchsorted(SEGMENT_STARTS, magnitude, side="right") - 1, 0, 7)
    step = np.array(SEGMENT_STEPS)[segment]
    error = np.abs(decoded - np.clip(samples, -32635, 32635))
    assert np.all(error <= step)


def test_matches_audioop_where_it_still_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    samples = np.arange(-32768, 32768, dtype=np.int16)
    assert encode_mulaw(samples) == audioop.lin2ulaw(samples.tobytes(), 2)
    codes = bytes(range(256))
    assert decode_mulaw(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_float_helpers_round_trip_a_tone() -> None:
    t = np.arange(800) / 8000.0
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    data = float_to_mulaw(tone)
    assert len(data) == len(tone)
    back = mulaw_to_float(data)
    assert back.dtype == np.float32
    assert np.max(np.abs(back - tone)) < 0.5 * 1024 / 32768  # within half the coarsest step
    assert float_to_mulaw(np.array([2.0, -2.0], dtype=np.float32)) == bytes([0x80, 0x00])
