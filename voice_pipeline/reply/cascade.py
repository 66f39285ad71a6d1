"""What a reply says: the chosen level, then the cascade's last resorts when a level fails.

`produce` speaks an Answer through a Reply and returns the level that answered. Failures of the
model levels (every LLM level failed, or TTS failed before any audio) fall through to the cached
"sorry" audio; the session counts consecutive last resorts and escalates.
"""

from __future__ import annotations

import asyncio
import numpy as np

from voice_pipeline.engines.fallback import FallbackLLM, FallbackRecord
from voice_pipeline.errors import EngineError
from voice_pipeline.metrics import TurnReport
from voice_pipeline.protocol.events import EventKind
from voice_pipeline.reply.answer import Answer, Level
from voice_pipeline.reply.phrasebook import FILLER, LLM_OFF, SORRY, Phrasebook
from voice_pipeline.reply.speaking import Reply, ReplyPlan


async def produce(
    reply: Reply, answer: Answer, plan: ReplyPlan, phrases: Phrasebook, report: TurnReport,
    first_audio_s: float | None = None,
) -> Level:
    """Speak `answer`; returns the level that answered: instant, small, large, local or cached.

    With `first_audio_s`, a reply that has nothing audible by then gets the cached filler first,
    so the user always hears something within the budget while the answer is still coming.
    """
    if answer.text is not None:
        if answer.text:
            await reply.speak_text(answer.text, phrases.get(answer.text), phrases.sample_rate_hz)
        return Level.INSTANT
    if answer.llm is None:  # the LLM is switched off: templates or this
        await speak_cached(reply, LLM_OFF, phrases)
        return Level.CACHED
    watchdog = None
    filler = phrases.get(FILLER)
    if answer.filler and filler is not None:
        await reply.add_cached(FILLER, filler, phrases.sample_rate_hz)
    elif first_audio_s is not None and filler is not None:
        watchdog = asyncio.get_running_loop().create_task(
            _fill_silence(reply, filler, phrases.sample_rate_hz, first_audio_s, report))
    record = FallbackRecord() if isinstance(answer.llm, FallbackLLM) else None  # a bare engine: no cascade
    plan.llm_record = record
    try:
        await reply.run(answer.llm, plan)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        report.llm = record
    _send_tool_calls(reply, answer)
    if record is None:
        return answer.route
    if answer.route is Level.LARGE and record.answered_level:
        return Level.LOCAL  # the remote level failed or missed its budget; the local model answered
    return answer.route


def _send_tool_calls(reply: Reply, answer: Answer) -> None:
    """The model called the client's tools: the client runs them and answers with their outputs."""
    made = answer.tools.made if answer.tools is not None else None
    for call in made.calls if made is not None else ():
        reply.event(EventKind.FUNCTION_CALL, call_id=call.call_id, name=call.name, arguments=call.arguments)


async def _fill_silence(reply: Reply, filler: np.ndarray, sample_rate_hz: int, after_s: float,
                        report: TurnReport) -> None:
    await asyncio.sleep(after_s)
    if not reply.record.pieces:  # nothing is being spoken yet: the first-audio budget is missed
        report.first_audio_budget_miss = True
        await reply.add_cached(FILLER, filler, sample_rate_hz)


async def last_resort(reply: Reply, phrases: Phrasebook, error: EngineError) -> Level:
    """After a failed level: the cached apology if it can still be heard, else nothing."""
    if reply.record.pieces and reply.outbox.sent_ms(reply.record.response_id) > 0:
        return Level.PARTIAL  # the user already hears an answer; cutting in with an apology would be worse
    await speak_cached(reply, SORRY, phrases)
    return Level.CACHED if SORRY in phrases else Level.NONE


async def speak_cached(reply: Reply, text: str, phrases: Phrasebook) -> None:
    """Pre-synthesized audio only: this path must work when the TTS engine is what failed."""
    if text in phrases:
        await reply.speak_text(text, phrases.get(text), phrases.sample_rate_hz)
    else:
        reply.text_only(text)
