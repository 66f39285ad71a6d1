"""Smart Turn v3.2 from the pipecat-ai wheel: our numpy features equal Pipecat's own, and the model
runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest

from voice_pipeline.engines.smart_turn import SmartTurnModel, SmartTurnScorer, last_window, log_mel, smart_turn_onnx

pytestmark = pytest.mark.integration


def pipecat_features():
    """Pipecat's numpy Whisper features, loaded by path (importing `pipecat` needs its dependencies)."""
    path = Path(smart_turn_onnx()).parents[1] / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_whisper_log_mel_features


@pytest.mark.parametrize("seconds", [0.4, 3.0, 11.0])
def test_features_match_pipecats_for_short_and_long_audio(seconds):
    rng = np.random.default_rng(7)
    audio = (0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)
    ours = log_mel(audio)
    assert ours.shape == (80, 800)
    np.testing.assert_allclose(ours, pipecat_features()(last_window(audio)), atol=1e-5)


async def test_the_scorer_runs_the_model_in_its_worker_thread():
    model = SmartTurnModel(n_threads=1)
    threads = []
    original = model.probability

    def recording(audio):
        threads.append(threading.current_thread().name)
        return original(audio)

    model.probability = recording
    scorer = SmartTurnScorer(model)
    try:
        p = await scorer.complete_probability(np.zeros(16_000, dtype=np.float32))
        scores = await asyncio.gather(*(scorer.complete_probability(np.ones(8_000, np.float32) * 0.01) for _ in range(3)))
    finally:
        scorer.close()
    assert 0.0 <= p <= 1.0 and all(0.0 <= s <= 1.0 for s in scores)
    assert threads and all(name.startswith("smart-turn") for name in threads)
    assert threading.main_thread().name not in threads
