"""The turn machine's per-pause wait from an end-of-turn model (`hint_endpoint_silence`)."""

from voice_pipeline.session.turn import EndOfTurn, SilenceStarted, SpeechResumed, UserState

from .test_turn import Driver, kinds


def paused_driver() -> Driver:
    d = Driver()
    d.silence(320)
    d.speech(640)
    d.silence(128)  # past pause_ms: PAUSED, not yet the 300 ms endpoint
    assert d.machine.state is UserState.PAUSED
    return d


def test_a_sure_model_ends_the_turn_before_the_plain_silence_rule():
    d = paused_driver()
    assert d.machine.hint_endpoint_silence(150.0, d.machine.pauses)
    assert d.machine.endpoint_silence_ms == 150.0
    d.silence(64)
    end = d.actions[-1]
    assert isinstance(end, EndOfTurn) and end.decided_ms - end.speech_end_ms < 300.0
    assert d.machine.endpoint_silence_ms == 300.0  # the next turn starts without the hint


def test_an_unsure_model_holds_the_turn_through_a_long_pause():
    d = paused_driver()
    d.machine.expect_hint()
    assert d.machine.endpoint_silence_ms == d.machine.config.max_endpoint_silence_ms
    d.machine.hint_endpoint_silence(2000.0, d.machine.pauses)
    d.silence(1500)
    assert not any(isinstance(a, EndOfTurn) for a in d.actions)
    d.speech(320)
    assert kinds(d.actions)[-1] is SpeechResumed
    assert d.machine.endpoint_silence_ms == 300.0  # resumed speech drops the hint


def test_a_hint_for_an_earlier_pause_is_ignored():
    d = paused_driver()
    first = d.machine.pauses
    d.speech(320)
    d.silence(128)
    assert kinds(d.actions).count(SilenceStarted) == 2 and d.machine.pauses == first + 1
    assert not d.machine.hint_endpoint_silence(100.0, first)
    assert d.machine.endpoint_silence_ms == 300.0


def test_a_hint_outside_a_pause_is_ignored_and_none_restores_the_rule():
    d = Driver()
    assert not d.machine.hint_endpoint_silence(100.0)  # QUIET
    d = paused_driver()
    assert d.machine.hint_endpoint_silence(900.0)
    assert d.machine.hint_endpoint_silence(None)
    assert d.machine.endpoint_silence_ms == 300.0
