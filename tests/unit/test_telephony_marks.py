"""MarkTracker: sent audio and echoed marks -> what the caller heard, ignoring echoes after clear."""

from __future__ import annotations

from voice_pipeline.telephony.marks import MarkTracker, PlayedPosition


def _send(tracker: MarkTracker, chunks_ms: list[float]) -> list[str]:
    names = []
    for chunk_ms in chunks_ms:
        tracker.audio_sent(chunk_ms)
        names.append(tracker.place_mark())
    return names


def test_heard_follows_echoed_marks() -> None:
    tracker = MarkTracker()
    tracker.start_reply("t1")
    names = _send(tracker, [200.0, 200.0, 200.0])
    assert tracker.position == PlayedPosition(0.0, 600.0)
    assert tracker.mark_played(names[0])
    assert tracker.position == PlayedPosition(200.0, 600.0)
    assert tracker.unplayed_ms == 400.0


def test_a_later_mark_confirms_the_earlier_ones() -> None:
    tracker = MarkTracker()
    tracker.start_reply("t1")
    names = _send(tracker, [100.0, 100.0, 100.0])
    assert tracker.mark_played(names[1])
    assert tracker.pending_marks == 1
    assert not tracker.mark_played(names[0])  # already counted
    assert tracker.position.heard_ms == 200.0


def test_clear_returns_what_was_heard_and_ignores_the_flushed_echoes() -> None:
    tracker = MarkTracker()
    tracker.start_reply("t1")
    names = _send(tracker, [300.0, 300.0, 300.0])
    tracker.mark_played(names[0])
    assert tracker.clear() == PlayedPosition(300.0, 900.0)
    # Providers echo the remaining marks right after a clear: they were not heard.
    assert not tracker.mark_played(names[1])
    assert not tracker.mark_played(names[2])
    assert tracker.position == PlayedPosition(300.0, 300.0)


def test_a_new_reply_starts_from_zero_and_old_marks_do_not_count() -> None:
    tracker = MarkTracker()
    tracker.start_reply("t1")
    old = _send(tracker, [500.0])
    tracker.start_reply("t2")
    new = _send(tracker, [100.0])
    assert old[0] != new[0] and "t2" in new[0]
    assert not tracker.mark_played(old[0])
    assert tracker.position == PlayedPosition(0.0, 100.0)
    assert tracker.mark_played(new[0])
    assert tracker.position.heard_ms == 100.0


def test_unknown_mark_names_are_ignored() -> None:
    tracker = MarkTracker()
    tracker.start_reply("t1")
    assert not tracker.mark_played("someone-else")
    assert tracker.position == PlayedPosition(0.0, 0.0)
