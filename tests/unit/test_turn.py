"""The turn-taking state machine, driven frame by frame on the audio clock."""

import pytest

from voice_pipeline.session.turn import (
    BargeIn,
    EndOfTurn,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnTaking,
    UserState,
)

FRAME = 32.0


class Driver:
    def __init__(self, **config):
        self.machine = TurnTaking(TurnConfig(**config))
        self.t = 0.0
        self.actions = []

    def feed(self, probability: float, frames: int = 1):
        out = []
        for _ in range(frames):
            self.t += FRAME
            out.extend(self.machine.on_vad(self.t, FRAME, probability))
        self.actions.extend(out)
        return out

    def speech(self, ms: float):
        return self.feed(0.9, int(ms // FRAME))

    def silence(self, ms: float):
        return self.feed(0.05, int(ms // FRAME))


def kinds(actions):
    return [type(a) for a in actions]


def test_speech_then_silence_is_one_turn_with_its_speech_end():
    d = Driver()
    d.silence(320)
    assert d.machine.state is UserState.QUIET
    d.speech(640)
    d.silence(640)
    assert kinds(d.actions) == [SpeechStarted, SilenceStarted, EndOfTurn]
    started, silence, end = d.actions
    assert started.start_ms == 320.0
    assert silence.speech_end_ms == end.speech_end_ms == 320.0 + 640.0
    assert end.reason == "silence"
    assert end.decided_ms - end.speech_end_ms >= 300.0
    assert d.machine.state is UserState.QUIET


def test_short_blip_is_not_speech():
    d = Driver(min_speech_ms=96)
    d.speech(64)
    d.silence(640)
    assert d.actions == []


def test_pause_shorter_than_endpoint_resumes_the_same_turn():
    d = Driver()
    d.speech(320)
    d.silence(160)  # past pause_ms (96), short of the endpoint (300)
    assert d.machine.state is UserState.PAUSED
    d.speech(320)
    d.silence(640)
    assert kinds(d.actions) == [SpeechStarted, SilenceStarted, SpeechResumed, SilenceStarted, EndOfTurn]
    assert d.actions[-1].speech_end_ms == 320.0 + 160.0 + 320.0


def test_gap_between_words_shorter_than_pause_emits_nothing():
    d = Driver()
    d.speech(320)
    d.silence(64)
    d.speech(320)
    assert kinds(d.actions) == [SpeechStarted]
    assert d.machine.state is UserState.SPEAKING


def test_uncertain_frames_hold_the_state_and_extend_speech():
    d = Driver(threshold=0.5)
    d.speech(128)
    d.feed(0.45, 3)  # between neg_threshold (0.35) and threshold: still speaking
    assert d.machine.state is UserState.SPEAKING
    d.silence(640)
    end = d.actions[-1]
    assert isinstance(end, EndOfTurn) and end.speech_end_ms == 128.0 + 3 * FRAME


def test_uncertain_frames_while_quiet_do_nothing():
    d = Driver()
    assert d.feed(0.45, 5) == []
    assert d.machine.state is UserState.QUIET


def test_uncertain_frames_during_a_pause_count_towards_the_endpoint():
    d = Driver()
    d.speech(320)
    d.silence(128)
    d.feed(0.45, 10)
    assert isinstance(d.actions[-1], EndOfTurn)


def test_barge_in_needs_speech_over_an_active_response():
    d = Driver(barge_in_min_speech_ms=96)
    d.machine.response_started()
    d.speech(64)
    assert kinds(d.actions) == [SpeechStarted]
    d.speech(32)
    assert kinds(d.actions) == [SpeechStarted, BargeIn]
    d.speech(320)
    assert kinds(d.actions).count(BargeIn) == 1  # once per response


def test_no_barge_in_without_a_response():
    d = Driver()
    d.speech(640)
    assert BargeIn not in kinds(d.actions)


def test_barge_in_after_response_finished_is_not_reported():
    d = Driver()
    d.machine.response_started()
    d.machine.response_finished()
    d.speech(640)
    assert BargeIn not in kinds(d.actions)


def test_barge_in_waits_for_speech_to_be_confirmed():
    d = Driver(min_speech_ms=128, barge_in_min_speech_ms=64)
    d.machine.response_started()
    d.speech(96)
    assert d.actions == []  # still QUIET: no barge-in on unconfirmed speech
    d.speech(32)
    assert kinds(d.actions) == [SpeechStarted, BargeIn]


def test_new_response_rearms_barge_in():
    d = Driver()
    d.machine.response_started()
    d.speech(160)
    d.silence(640)
    d.machine.response_started()
    d.speech(160)
    assert kinds(d.actions).count(BargeIn) == 2


def test_commit_ends_the_turn_at_the_last_speech():
    d = Driver()
    d.speech(320)
    (end,) = d.machine.commit(now_ms=400.0)
    assert end == EndOfTurn(320.0, 400.0, "commit")
    assert d.machine.state is UserState.QUIET


def test_commit_without_speech_ends_at_now():
    d = Driver()
    (end,) = d.machine.commit(now_ms=500.0)
    assert end == EndOfTurn(500.0, 500.0, "commit")


def test_idle_input_ends_a_pending_turn_only():
    d = Driver()
    assert d.machine.input_idle(100.0) == []
    d.speech(320)
    (end,) = d.machine.input_idle(900.0)
    assert end.reason == "idle" and end.speech_end_ms == 320.0


def test_clear_forgets_the_turn():
    d = Driver()
    d.speech(320)
    d.machine.clear()
    assert d.machine.state is UserState.QUIET
    assert d.silence(640) == []


def test_vad_disabled_ignores_audio():
    d = Driver(vad_enabled=False)
    assert d.speech(640) == [] and d.silence(640) == []


@pytest.mark.parametrize(
    "probability, expected",
    [(None, 300.0), (0.5, 300.0), (1.0, 150.0), (0.75, 225.0), (0.0, 1200.0), (0.25, 750.0)],
)
def test_end_of_turn_hint_moves_the_endpoint(probability, expected):
    machine = TurnTaking(TurnConfig())
    machine.hint_end_of_turn(probability)
    assert machine.endpoint_silence_ms == pytest.approx(expected)


def test_confident_hint_ends_the_turn_sooner_and_resuming_clears_it():
    d = Driver()
    d.speech(320)
    d.machine.hint_end_of_turn(1.0)
    d.silence(160)
    assert isinstance(d.actions[-1], EndOfTurn)  # 150 ms sufficed
    d.speech(320)
    d.machine.hint_end_of_turn(0.0)
    d.silence(160)
    assert d.machine.state is UserState.PAUSED
    d.speech(64)  # resuming drops the hint
    assert d.machine.endpoint_silence_ms == 300.0


def test_an_expected_hint_holds_the_endpoint_until_it_comes():
    d = Driver()
    d.speech(320)
    d.machine.expect_hint()  # not paused yet: nothing to hold
    assert d.machine.endpoint_silence_ms == 300.0
    d.silence(128)
    d.machine.expect_hint()
    d.silence(640)  # far past 300 ms, short of the longest wait
    assert d.machine.state is UserState.PAUSED
    d.machine.hint_end_of_turn(0.9)  # complete: 180 ms suffice, so the next frame ends the turn
    d.silence(32)
    assert isinstance(d.actions[-1], EndOfTurn)


def test_speech_while_awaiting_a_hint_clears_the_wait():
    d = Driver()
    d.speech(320)
    d.silence(128)
    d.machine.expect_hint()
    d.speech(64)
    assert d.machine.endpoint_silence_ms == 300.0


def test_endpoint_shorter_than_pause_fires_both_in_order():
    d = Driver(pause_ms=96, endpoint_silence_ms=96)
    d.speech(320)
    d.silence(96)
    assert kinds(d.actions) == [SpeechStarted, SilenceStarted, EndOfTurn]
