"""CI gate: the committed end-of-turn calibration, on the held-out split, is not worse than the
committed models/eot/EVAL.json (counts only; timings are reported by `voice-pipeline eval eot`)."""

from __future__ import annotations

import json

import pytest

from voice_pipeline.eot_commands import EVAL_PATH, evaluate_heldout, load_split
from voice_pipeline.engines.text_eot import LlamaEndLogProb
from voice_pipeline.session.end_of_turn import Calibration

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results():
    return evaluate_heldout(LlamaEndLogProb(n_threads=1), Calibration.load())


def test_heldout_is_the_committed_split_and_never_seen_in_training():
    committed = json.loads(EVAL_PATH.read_text())
    heldout = {row["text"] for row in load_split("heldout")}
    assert len(heldout) == committed["heldout"]["n"]
    assert heldout.isdisjoint(row["text"] for row in load_split("train"))


def test_heldout_counts_are_not_worse_than_committed(results):
    committed = json.loads(EVAL_PATH.read_text())
    assert results["calibration"] == committed["calibration"]
    now, then = results["heldout"], committed["heldout"]
    assert (now["n"], now["complete"], now["threshold"]) == (then["n"], then["complete"], then["threshold"])
    assert now["false_cutoffs"] <= then["false_cutoffs"]
    assert now["true_complete"] >= then["true_complete"]


def test_the_hint_shortens_complete_turns_and_lengthens_incomplete_ones(results):
    wait = results["endpoint_wait"]
    assert wait["mean_complete_ms"] < wait["without_hint_ms"] < wait["mean_incomplete_ms"]
