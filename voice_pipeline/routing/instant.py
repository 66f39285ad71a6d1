"""Deterministic answers for instant intents: no model, just templates, tools and a small context.

`answer_instant(text, context)` returns an `InstantAnswer` (short spoken English, an optional
action and an optional effect for the session) or None when neither a template nor a tool's
parser (voice_pipeline/tools: arithmetic, units, dates, timers) claims the utterance, so the
caller falls back to a model. The whole utterance must match: "thanks, and explain X" is not an
instant turn.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from voice_pipeline.routing.features import normalize
from voice_pipeline.routing.spoken import WEEKDAYS, clock_words, date_words
from voice_pipeline.tools import ToolContext, ToolRegistry, builtin_tools

_LEAD = re.compile(r"^(?:(?:hey there|hi there|hey|hi|um+|uh+|er|okay|ok|so|alright|well|please|assistant|hey assistant)\s+)+")
_WHATS = re.compile(r"\bwhats\b")
_TAIL = re.compile(r"(?:\s+(?:please|for me|now|right now|then|thanks|thank you))+$")


class InstantAction(str, enum.Enum):
    CANCEL = "cancel"  # stop speaking and drop the current reply
    REPEAT = "repeat"  # the text is the last reply again
    VOLUME_UP = "volume_up"
    VOLUME_DOWN = "volume_down"
    MUTE = "mute"
    UNMUTE = "unmute"
    SLOWER = "slower"
    FASTER = "faster"
    CONFIRM = "confirm"  # the user said yes
    DENY = "deny"  # the user said no
    END = "end"  # the user said goodbye; the client may close the conversation


@dataclass(frozen=True)
class InstantContext:
    now: datetime  # local wall-clock time, injected (tests pass a fixed one)
    last_reply: str | None = None  # the assistant's last spoken reply, for "say that again"
    tools: ToolRegistry | None = None  # None: the built-in tools


@dataclass(frozen=True)
class InstantAnswer:
    intent: str
    text: str  # what to say; empty means say nothing (stop, cancel)
    action: InstantAction | None = None
    effect: object | None = None  # a tool's request to the session (a timer), once the reply is given


Responder = Callable[[str, InstantContext], InstantAnswer]


def _fixed(intent: str, text: str, action: InstantAction | None = None) -> Responder:
    return lambda _said, _context: InstantAnswer(intent, text, action)


def _time(_said: str, context: InstantContext) -> InstantAnswer:
    return InstantAnswer("time", f"It's {clock_words(context.now)}.")


def _date(_said: str, context: InstantContext) -> InstantAnswer:
    return InstantAnswer("date", f"It's {date_words(context.now.date())}.")


def _weekday_check(said: str, context: InstantContext) -> InstantAnswer:
    today = WEEKDAYS[context.now.weekday()]
    asked = next(day for day in WEEKDAYS if day.lower() in said)
    yes_no = "Yes" if asked == today else "No"
    return InstantAnswer("weekday_check", f"{yes_no}, it's {today}.")


def _greeting(said: str, context: InstantContext) -> InstantAnswer:
    hour = context.now.hour
    part = "morning" if 5 <= hour < 12 else "afternoon" if 12 <= hour < 18 else "evening"
    if "good" in said and part not in said and "night" not in said:
        return InstantAnswer("greeting", f"Good {part}! What can I do for you?")
    return InstantAnswer("greeting", "Hi! What can I do for you?")


def _repeat(_said: str, context: InstantContext) -> InstantAnswer:
    if not context.last_reply:
        return InstantAnswer("repeat", "I haven't said anything yet.")
    return InstantAnswer("repeat", context.last_reply, InstantAction.REPEAT)


_DAYS = "|".join(day.lower() for day in WEEKDAYS)

# (pattern over the normalised utterance, responder); the first full match wins.
INTENTS: list[tuple[re.Pattern[str], Responder]] = [
    (re.compile(rf"(?:is it|is today|it's|today is) (?:{_DAYS})(?: today)?"), _weekday_check),
    (re.compile(r"(?:what(?:'s| is)? (?:the )?(?:time|time is it|time have we got)(?: is it)?(?: now)?"
                r"|what time is it|(?:do you know |could you tell me |can you tell me |tell me )(?:what )?(?:the )?time"
                r"(?: it is| is it)?|(?:current |got the )?time|got the time)"), _time),
    (re.compile(r"(?:what(?:'s| is)? (?:today's |the )?date(?: today| is it| is it today)?|what date is it(?: today)?"
                r"|which date is it(?: today)?|(?:tell me )?(?:today's |the )date|what(?:'s| is) today"
                r"|what day(?: of the week)? is it(?: today)?|which day(?: of the week)? is it(?: today)?"
                r"|do you know what day it is)"), _date),
    (re.compile(r"(?:stop(?: it| talking| that)?(?: stop)*|cancel(?: it| that)?|never ?mind(?: forget it)?|forget it"
                r"|be quiet|quiet|shut up|shh+|hush|silence|enough|that's enough|pause|wait|hold on)"),
     _fixed("stop", "", InstantAction.CANCEL)),
    (re.compile(r"(?:sorry )?(?:(?:can|could) you )?(?:say (?:that|it) again|repeat(?: that| what you said| the last thing)?"
                r"|what did you (?:just )?say|come again|sorry come again|pardon(?: me)?|sorry what|say again"
                r"|one more time|(?:sorry )?say that one more time|i didn't (?:catch that|hear you)"
                r"|sorry i missed that|huh|what was that)"), _repeat),
    (re.compile(r"(?:make it |speak |talk )?louder|speak up|turn (?:it|the volume) up|(?:turn )?(?:the )?volume up"
                r"|turn up the volume"), _fixed("volume_up", "Okay, louder.", InstantAction.VOLUME_UP)),
    (re.compile(r"(?:a bit |speak |talk )?quieter|turn (?:it|the volume) down(?: a bit)?|(?:turn )?(?:the )?volume down"
                r"|lower the volume"), _fixed("volume_down", "Okay, quieter.", InstantAction.VOLUME_DOWN)),
    (re.compile(r"mute(?: yourself)?"), _fixed("mute", "", InstantAction.MUTE)),
    (re.compile(r"unmute"), _fixed("unmute", "I'm back.", InstantAction.UNMUTE)),
    (re.compile(r"(?:(?:can you )?(?:speak|talk) slower|slow down)"),
     _fixed("slower", "Okay, I'll slow down.", InstantAction.SLOWER)),
    (re.compile(r"(?:speak|talk) faster"), _fixed("faster", "Okay, I'll speed up.", InstantAction.FASTER)),
    (re.compile(r"(?:hello|hi|hey|howdy|yo|hiya|morning|evening|afternoon|good (?:morning|afternoon|evening))"
                r"(?: there| assistant| to you| hello| hey)?(?: are you (?:there|listening))?|are you there"),
     _greeting),
    (re.compile(r"(?:thanks|thank you|cheers|much appreciated|appreciate it|ta)(?: so much| very much| a lot)?(?: buddy| mate| man)?"
                r"|(?:ok|okay|perfect|great|awesome|that's (?:great|helpful|perfect)) (?:thanks|thank you)"
                r"|(?:thanks|thank you) that's (?:great|helpful|perfect)|(?:good stuff|nice|cool) (?:thanks|thank you)"),
     _fixed("thanks", "You're welcome.")),
    (re.compile(r"(?:good ?bye|bye(?: bye| for now| for today)?|see (?:you|ya)(?: later| tomorrow)?|good night|night night|talk (?:to you )?later"
                r"|catch you later|have a good one|that's all(?: for now)?|that will be all|i'm (?:all )?done(?: bye)?"
                r"|we're done|ok bye|goodbye for now|i'm (?:all )?done thanks bye)"), _fixed("goodbye", "Goodbye!", InstantAction.END)),
    (re.compile(r"(?:help|what can you do|what can i ask you|what are you able to (?:do|help with)"
                r"|what kind of things can you do|how do i use you|what do you do|what are your features)"),
     _fixed("capabilities", "I can answer questions, explain things, help you plan, and tell you the time. Just ask.")),
    (re.compile(r"(?:yes|yeah|yep|yup|sure|sure thing|ok|okay|correct|that's right|right|absolutely|of course"
                r"|yes go ahead|yes that's right|correct yes)"), _fixed("yes", "Okay.", InstantAction.CONFIRM)),
    (re.compile(r"(?:no|nope|nah|not really|no that's wrong|no not that)"),
     _fixed("no", "Okay.", InstantAction.DENY)),
]


def _said(text: str) -> str:
    return _WHATS.sub("what's", normalize(text))


def strip_fillers(text: str) -> str:
    """Normalise, then drop leading fillers ("hey", "um", "okay") and trailing ones ("please")."""
    said = _said(text)
    stripped = _TAIL.sub("", _LEAD.sub("", said)).strip()
    return stripped or said


_ANSWERS_TO_A_QUESTION = {"yes", "no"}


def answer_instant(text: str, context: InstantContext) -> InstantAnswer | None:
    said = _said(text)
    without_lead = _LEAD.sub("", said).strip() or said
    for candidate in dict.fromkeys((said, without_lead, strip_fillers(text))):
        for pattern, responder in INTENTS:
            if pattern.fullmatch(candidate):
                answer = responder(candidate, context)
                if answer.intent in _ANSWERS_TO_A_QUESTION and _asked_a_question(context):
                    return None  # "yes" to "shall I go on?" belongs to the model, with the history
                return answer
    tools = context.tools if context.tools is not None else BUILTIN_TOOLS
    found = tools.answer(text, ToolContext(context.now))
    if found is None:
        return None
    tool, result = found
    return InstantAnswer(f"tool:{tool.name}", result.text, effect=result.effect)


BUILTIN_TOOLS = builtin_tools()


def _asked_a_question(context: InstantContext) -> bool:
    return context.last_reply is not None and context.last_reply.rstrip().endswith("?")
