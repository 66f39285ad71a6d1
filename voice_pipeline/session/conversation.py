"""A session's conversation: the model's context (history) and the transcript log.

`reset()` clears the context the model sees but keeps the log of everything said in the session.
A reply enters the history as what the user actually heard, which a barge-in can shorten.
"""

from __future__ import annotations

from voice_pipeline.engines.base import ChatMessage


class Conversation:
    def __init__(self, max_turns: int) -> None:
        self.history: list[ChatMessage] = []
        self.log: list[tuple[str, str]] = []
        self._max_messages = 2 * max_turns
        self._reply_slot = 0  # index where the latest reply's assistant message goes

    def prompt(self, system_prompt: str, user_text: str) -> list[ChatMessage]:
        """The messages for a new reply: system prompt, recent history, the new user turn."""
        recent = self.history[-self._max_messages :] if self._max_messages else []
        return [ChatMessage("system", system_prompt), *recent, ChatMessage("user", user_text)]

    def add_user(self, text: str) -> None:
        self.history.append(ChatMessage("user", text))
        self.log.append(("user", text))
        self._reply_slot = len(self.history)

    def set_reply(self, heard: str) -> None:
        """Record (or replace) the latest reply as the words the user heard."""
        at = self._reply_slot
        if at < len(self.history) and self.history[at].role == "assistant":
            del self.history[at]
        if heard:
            self.history.insert(at, ChatMessage("assistant", heard))

    def begin_unprompted(self) -> None:
        """The assistant speaks on its own (a timer going off): its reply goes after everything so far."""
        self._reply_slot = len(self.history)

    def last_reply(self) -> str | None:
        return next((m.content for m in reversed(self.history) if m.role == "assistant"), None)

    def log_reply(self, heard: str) -> None:
        self.log.append(("assistant", heard))

    def reset(self) -> None:
        self.history.clear()
        self._reply_slot = 0
