"""The pure parts of the cheaper final pass: cutting a restarted transcript, joining a re-decoded tail."""

from __future__ import annotations

import pytest

from voice_pipeline.bench.final_pass import join_overlap
from voice_pipeline.engines.whisper_window import cut_restart


@pytest.mark.parametrize(
    "tokens, kept",
    [
        ([1, 2, 3, 4, 5, 1, 2, 3], [1, 2, 3, 4, 5]),  # starts over after five tokens
        ([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3], [1, 2, 3, 4]),  # starts over twice
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),  # no repeat
        ([1, 2, 3, 4, 1, 2], [1, 2, 3, 4, 1, 2]),  # a two-token echo is too short to call a restart
        ([7, 7, 7, 7, 7, 7], [7, 7, 7]),  # a run of one token is cut after min_repeat
        ([], []),
    ],
)
def test_cut_restart(tokens, kept):
    assert cut_restart(tokens) == kept


@pytest.mark.parametrize(
    "head, tail, joined",
    [
        ("what is the capital", "the capital of France?", "what is the capital of France?"),
        ("How far away is", "Is the moon?", "How far away is the moon?"),  # case and punctuation ignored
        ("turn on the", "lights please", "turn on the lights please"),  # no overlap: appended
        ("", "hello there", "hello there"),
    ],
)
def test_join_overlap(head, tail, joined):
    assert join_overlap(head, tail) == joined
