"""The turn machine's held barge-in: speech over a reply pauses it until the words are judged."""

from voice_pipeline.session.turn import (
    BargeIn,
    BargeInHeld,
    EndOfTurn,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    UserState,
)

from .test_turn import Driver, kinds


def held_driver(**config) -> Driver:
    d = Driver(barge_in_min_speech_ms=96, barge_in_confirm_ms=640, **config)
    d.machine.response_started()
    return d


def test_speech_over_a_reply_is_held_not_a_barge_in():
    d = held_driver()
    d.speech(320)
    assert kinds(d.actions) == [SpeechStarted, BargeInHeld]
    assert d.machine.barge_in_held
    assert d.actions[1].at_ms == 96.0  # as soon as a barge-in used to be declared


def test_held_turn_waits_for_the_verdict_before_its_endpoint():
    d = held_driver()
    d.speech(320)
    d.silence(900)  # far past the plain 300 ms endpoint
    assert kinds(d.actions) == [SpeechStarted, BargeInHeld, SilenceStarted]
    assert d.machine.endpoint_silence_ms == d.machine.config.max_endpoint_silence_ms


def test_a_backchannel_verdict_forgets_the_turn_and_rearms():
    d = held_driver()
    d.speech(320)
    d.silence(160)
    assert d.machine.barge_in_resolved(interrupt=False)
    assert d.machine.state is UserState.QUIET and not d.machine.barge_in_held
    d.silence(900)
    assert EndOfTurn not in kinds(d.actions)  # the forgotten turn never ends
    d.speech(320)  # the next speech over the same reply is held again
    assert kinds(d.actions)[-2:] == [SpeechStarted, BargeInHeld]


def test_an_interrupting_verdict_keeps_the_turn_and_its_endpoint():
    d = held_driver()
    d.speech(320)
    d.silence(160)
    assert d.machine.barge_in_resolved(interrupt=True)
    d.silence(320)
    assert kinds(d.actions) == [SpeechStarted, BargeInHeld, SilenceStarted, EndOfTurn]
    d.speech(320)  # the reply was interrupted once: no second barge-in in it
    assert BargeIn not in kinds(d.actions) and kinds(d.actions).count(BargeInHeld) == 1


def test_a_verdict_after_the_hold_was_settled_changes_nothing():
    d = held_driver()
    assert not d.machine.barge_in_resolved(interrupt=False)  # nothing held
    d.speech(320)
    d.machine.response_finished()  # the reply ended meanwhile
    assert not d.machine.barge_in_resolved(interrupt=False)
    assert d.machine.state is UserState.SPEAKING


def test_speech_too_long_for_a_backchannel_is_a_barge_in_without_a_verdict():
    d = held_driver()
    d.speech(320)
    d.silence(160)
    d.speech(256)  # 288 + 256 < 640: still held across the pause
    assert BargeIn not in kinds(d.actions) and SpeechResumed in kinds(d.actions)
    d.speech(160)
    assert kinds(d.actions).count(BargeIn) == 1 and not d.machine.barge_in_held
    barge_in = [a for a in d.actions if isinstance(a, BargeIn)][0]
    assert barge_in.at_ms > d.actions[1].at_ms


def test_a_new_response_clears_a_hold():
    d = held_driver()
    d.speech(320)
    d.machine.response_started()
    assert not d.machine.barge_in_held


def test_without_confirmation_speech_over_a_reply_interrupts_at_once():
    d = Driver(barge_in_min_speech_ms=96, barge_in_confirm_ms=0)
    d.machine.response_started()
    d.speech(320)
    assert kinds(d.actions) == [SpeechStarted, BargeIn]
