"""What a worker's stages are busy with, shared by its sessions, so the least valuable work is shed first.

Overload is a product state: when the STT has passes waiting for a free worker, new partial
transcripts are not started (finals never wait behind them), and when the LLM's slots are all
taken (or the STT is behind) no reply is prepared speculatively during a pause; the turn is
answered at its endpoint as usual. Where the STT shares the CPU with the LLM and TTS
(`stt.partials_yield`), no partial starts either while any session's reply is still before its
first audio: a partial is worth less than someone waiting to hear an answer. What was shed is
counted (`vp_shed_total{work}`). Admission (`server.max_sessions`, `/ready` answering "full") is
the next line of defence.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class StageLoad:
    def __init__(self, llm_slots: int, stt_waiting: Callable[[], int] = lambda: 0, partials_yield: bool = False) -> None:
        self.llm_slots = max(1, llm_slots)  # replies the LLM runs at once (llm.instances / slots)
        self.replies_running = 0  # replies between their route and their last audio, all sessions
        self._stt_waiting = stt_waiting  # STT passes not started: no free worker, or past the next batch
        self.partials_yield = partials_yield  # partials wait while a reply is not audible yet
        self._not_audible: set[Hashable] = set()  # running replies whose first audio has not gone out

    @property
    def replies_before_first_audio(self) -> int:
        return len(self._not_audible)

    def sheds_partials(self) -> bool:
        return self._stt_waiting() > 0 or (self.partials_yield and bool(self._not_audible))

    def sheds_speculation(self) -> bool:
        return self.replies_running >= self.llm_slots or self._stt_waiting() > 0

    def reply_started(self, reply: Hashable) -> None:
        """`reply` (any key unique in the worker) began: it holds an LLM slot and is not audible yet."""
        self.replies_running += 1
        self._not_audible.add(reply)

    def reply_audible(self, reply: Hashable) -> None:
        """`reply`'s first audio went out."""
        self._not_audible.discard(reply)

    def reply_finished(self, reply: Hashable) -> None:
        self.replies_running = max(0, self.replies_running - 1)
        self._not_audible.discard(reply)
