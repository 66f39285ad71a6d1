"""The LLM variant setting picks the adapter: the committed voice LoRA for tuned (the default), none for base."""

from pathlib import Path

import pytest

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.llama_cpp import voice_lora_path
from voice_pipeline.errors import ConfigError


def test_tuned_is_the_default_and_base_has_no_adapter():
    assert Settings.load(environ={}).llm.variant == "tuned"
    assert Settings.load(environ={"VP_LLM_VARIANT": "base"}).llm.variant == "base"
    assert voice_lora_path("base") == ""


def test_tuned_uses_the_committed_adapter():
    assert Path(voice_lora_path("tuned")).is_file()


def test_unknown_variant_is_named():
    with pytest.raises(ConfigError, match="large"):
        voice_lora_path("large")
