"""What a worker's stages are busy with, shared by its sessions, so the least valuable work is shed first.

Overload is a product state: when the STT has passes waiting for a free worker, new partial
transcripts are not started (finals never wait behind them), and when the LLM's slots are all
taken (or the STT is behind) no reply is prepared speculatively during a pause; the turn is
answered at its endpoint as usual. What was shed is counted (`vp_shed_total{work}`). Admission
(`server.max_sessions`, `/ready` answering "full") is the next line of defence.
"""

from __future__ import annotations

from collections.abc import Callable


class StageLoad:
    def __init__(self, llm_slots: int, stt_waiting: Callable[[], int] = lambda: 0) -> None:
        self.llm_slots = max(1, llm_slots)  # replies the LLM runs at once (llm.instances / slots)
        self.replies_running = 0  # replies between their route and their last audio, all sessions
        self._stt_waiting = stt_waiting  # STT passes not started: no free worker, or past the next batch

    def sheds_partials(self) -> bool:
        return self._stt_waiting() > 0

    def sheds_speculation(self) -> bool:
        return self.replies_running >= self.llm_slots or self._stt_waiting() > 0

    def reply_started(self) -> None:
        self.replies_running += 1

    def reply_finished(self) -> None:
        self.replies_running = max(0, self.replies_running - 1)
