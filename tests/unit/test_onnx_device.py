"""Where the ONNX models run: CUDA only when onnxruntime offers it, the CPU provider always after it."""

from __future__ import annotations

import onnxruntime
import pytest

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.onnx_device import CPU, CUDA, onnx_providers
from voice_pipeline.errors import ConfigError


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])


def test_auto_takes_cuda_with_the_cpu_behind_it_when_onnxruntime_has_it(with_cuda):
    assert onnx_providers("auto") == [CUDA, CPU]
    assert onnx_providers("CUDA") == [CUDA, CPU]
    assert onnx_providers("cpu") == [CPU]


def test_without_a_cuda_provider_auto_is_the_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    assert onnx_providers("auto") == [CPU]
    with pytest.raises(ConfigError, match="gpu extra"):
        onnx_providers("cuda")
    with pytest.raises(ConfigError, match="one of auto, cpu, cuda"):
        onnx_providers("gpu")


def test_settings_name_the_device_of_the_vad_models_and_of_piper():
    settings = Settings.load(environ={"VP_VAD_DEVICE": "cpu", "VP_TTS_DEVICE": "cuda"})
    assert (settings.vad.device, settings.tts.device) == ("cpu", "cuda")
    assert (Settings.load(environ={}).vad.device, Settings.load(environ={}).tts.device) == ("cpu", "cpu")
