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
    sessions = tts._voice.resources[0].sessions  # the first pieces' lane streams: the voice's three stages
    for session in sessions:
        assert session.get_session_options().intra_op_num_threads == 1
        assert session.get_providers() == ["CPUExecutionProvider"]
    later = tts._later.resources[0].voice.session  # the later lane (at the first lane's gain): its own session
    assert later not in sessions and later.get_session_options().intra_op_num_threads == 1
