"""Settings: defaults, then a TOML file, then VP_* environment variables."""

import pytest

from voice_pipeline.app.settings import Settings
from voice_pipeline.errors import ConfigError


def test_file_then_environment(tmp_path):
    path = tmp_path / "vp.toml"
    path.write_text("[vad]\nendpoint_silence_ms = 250\n[server]\nport = 9000\nlog_transcripts = true\n")
    settings = Settings.load(path, environ={"VP_SERVER_PORT": "9100", "VP_STT_PARTIALS": "off", "OTHER": "x"})
    assert settings.vad.endpoint_silence_ms == 250
    assert settings.server.port == 9100
    assert settings.server.log_transcripts is True
    assert settings.stt.partials is False


def test_defaults_are_private_and_fast():
    settings = Settings.load(environ={})
    assert settings.server.log_transcripts is False
    assert settings.vad.endpoint_silence_ms <= 300


@pytest.mark.parametrize(
    "environ",
    [{"VP_NOPE_X": "1"}, {"VP_SERVER_NOPE": "1"}, {"VP_SERVER_PORT": "eighty"}, {"VP_STT_PARTIALS": "maybe"}],
)
def test_bad_settings_are_named(environ):
    with pytest.raises(ConfigError) as info:
        Settings.load(environ=environ)
    assert next(iter(environ)) in str(info.value)


@pytest.mark.parametrize("value, measured, on", [("auto", True, True), ("auto", False, False), ("on", False, True),
                                            ("false", True, False), ("1", False, True)])
def test_auto_switches_follow_the_measurement_unless_forced(value, measured, on):
    from voice_pipeline.app.settings import switch_on

    assert switch_on(value, measured) is on


def test_a_bad_switch_is_named():
    from voice_pipeline.app.settings import switch_on

    with pytest.raises(ConfigError, match="maybe"):
        switch_on("maybe", False)


@pytest.mark.parametrize("cores, workers", [(1, 2), (2, 2), (8, 2), (16, 4)])
def test_tts_lanes_have_two_synthesis_threads_at_least(monkeypatch, cores, workers):
    """One per four cores, but never one: a first piece would wait behind a running-low piece."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert Settings.load(environ={}).tts.workers == workers
    assert Settings.load(environ={"VP_TTS_WORKERS": "1"}).tts.workers == 1, "the operator may still say 1"
