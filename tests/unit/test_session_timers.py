"""A timer set in a session speaks up later on its own, keeps the history in order, and dies with the session."""

from __future__ import annotations

import asyncio

from voice_pipeline.protocol import commands as cmd
from voice_pipeline.reply.answer import Answerer

from .fakes import FakeLlm, fake_engines
from .test_session import Harness


def _engines_with_tools():
    engines = fake_engines()
    engines.answerer = Answerer(None, FakeLlm())  # no router: templates and tools, then the model
    return engines


async def test_a_timer_fires_as_a_reply_of_its_own_while_the_user_is_silent() -> None:
    async with Harness(_engines_with_tools()) as h:
        await h.session.handle(cmd.UserText("What is seventeen times twenty three?"))
        first = await h.sink.wait_for("response.done")
        assert first.data["text"] == "Seventeen times twenty-three is three hundred ninety-one."
        await h.session.handle(cmd.UserText("Set a timer for 1 second."))
        confirmed = await h.sink.wait_for("response.done", 2)
        assert confirmed.data["text"] == "Okay, a timer for one second, starting now."
        assert h.session.timers.pending == 1
        done = await h.sink.wait_for("response.done", 3, timeout_s=10.0)
        assert done.data["text"] == "Your one second timer is done." and done.data["status"] == "completed"
        assert h.session.timers.pending == 0
        metrics = await h.sink.wait_for("turn.metrics", 3)
        assert metrics.data["route"] == "instant" and metrics.data["route_reason"] == "timer"
        history = [(m.role, m.content) for m in h.session.conversation.history]
        assert history == [
            ("user", "What is seventeen times twenty three?"),
            ("assistant", "Seventeen times twenty-three is three hundred ninety-one."),
            ("user", "Set a timer for 1 second."),
            ("assistant", "Okay, a timer for one second, starting now."),
            ("assistant", "Your one second timer is done."),
        ]


async def test_cancel_and_session_end_stop_pending_timers() -> None:
    async with Harness(_engines_with_tools()) as h:
        await h.session.handle(cmd.UserText("set a timer for 10 minutes"))
        await h.sink.wait_for("response.done")
        await h.session.handle(cmd.UserText("remind me in an hour to stretch"))
        await h.sink.wait_for("response.done", 2)
        assert h.session.timers.pending == 2
        await h.session.handle(cmd.UserText("cancel my timers"))
        await h.sink.wait_for("response.done", 3)
        assert h.session.timers.pending == 0
        await h.session.handle(cmd.UserText("set a timer for 10 minutes"))
        await h.sink.wait_for("response.done", 4)
        assert h.session.timers.pending == 1
        timers = h.session.timers
    await asyncio.sleep(0)
    assert timers.pending == 0  # the session ended: nothing is left to fire into a closed session
