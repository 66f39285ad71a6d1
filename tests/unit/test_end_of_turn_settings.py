"""Which end-of-turn signal the server loads (`vad.end_of_turn`, and the older `vad.semantic_eot`)."""

import pytest

from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.end_of_turn import DEFAULT_AUTO, resolve_signal
from voice_pipeline.errors import ConfigError


def settings(**env: str) -> Settings:
    return Settings.load(environ={f"VP_VAD_{k.upper()}": v for k, v in env.items()})


def test_the_default_is_the_best_measured_signal():
    assert resolve_signal(settings(), stt_fast=False) == DEFAULT_AUTO == "audio+text"


@pytest.mark.parametrize("choice", ["audio", "audio+text", "text", "silence"])
def test_an_explicit_choice_is_kept(choice):
    assert resolve_signal(settings(end_of_turn=choice), stt_fast=False) == choice


def test_the_older_switch_still_means_what_it_meant():
    assert resolve_signal(settings(semantic_eot="on"), stt_fast=False) == "text"
    assert resolve_signal(settings(semantic_eot="off"), stt_fast=True) == "silence"


def test_without_the_pause_transcript_the_words_cannot_be_scored():
    s = settings(end_of_turn="audio+text")
    s.stt.early_final = False
    assert resolve_signal(s, stt_fast=True) == "audio"
    s.vad.end_of_turn = "text"
    assert resolve_signal(s, stt_fast=True) == "silence"


def test_an_unknown_choice_is_a_configuration_error():
    with pytest.raises(ConfigError):
        resolve_signal(settings(end_of_turn="vibes"), stt_fast=False)
