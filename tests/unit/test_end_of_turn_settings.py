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


def test_agreeing_signals_end_the_turn_after_their_own_guard_and_audio_alone_after_its_own():
    from voice_pipeline.session.end_of_turn import AudioPolicy, judge

    policy = AudioPolicy.from_settings(settings(eot_agree_silence_ms="450", eot_sure_silence_ms="150").vad)
    assert judge(policy, 0.9, "", 0.95, text_pending=False, use_text=True) == ("complete", 450)
    assert judge(policy, 0.9, "", 0.5, text_pending=False, use_text=True) == ("incomplete", policy.wait_silence_ms)
    assert judge(policy, 0.9, "", None, text_pending=True, use_text=True) is None  # the words still decide
    assert judge(policy, 0.9, "", None, text_pending=False, use_text=False) == ("complete", 150)
    assert AudioPolicy.from_settings(settings().vad).agree_silence_ms > settings().vad.endpoint_silence_ms
