"""Piper's onnxruntime threads: the cores shared out among the worker processes, not all of them in each."""

from __future__ import annotations

import os

from voice_pipeline.app.settings import TtsSettings
from voice_pipeline.engines.piper import PiperTts, synthesis_threads


def test_the_cores_are_shared_out_among_the_workers_unless_set():
    cores = os.cpu_count() or 1
    assert synthesis_threads(0, 1) == cores
    assert synthesis_threads(0, cores * 4) == 1  # never zero
    assert synthesis_threads(3, 8) == 3


def test_the_voice_session_gets_the_thread_count_and_still_speaks():
    tts = PiperTts(TtsSettings(workers=1), threads=1)
    session = tts._voice.resources[0].session
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]
    later = tts._later.resources[0].session  # the later pieces' lane: its own session, as many threads
    assert later is not session and later.get_session_options().intra_op_num_threads == 1
