"""The cascade's escalation event reaches a phone call as a transfer request."""

from voice_pipeline.protocol.events import EventKind, ServerEvent
from voice_pipeline.transports.phone import PhoneSink


class _Session:
    session_id = "s1"


async def test_escalation_event_asks_the_call_to_transfer():
    asked = []
    sink = PhoneSink(line=None, session=_Session(), escalate=asked.append)
    await sink.send_event(ServerEvent(EventKind.ESCALATION, "s1", data={"reason": "repeated_failures"}))
    assert asked == ["repeated_failures"]


async def test_escalation_without_a_transfer_path_is_ignored():
    sink = PhoneSink(line=None, session=_Session())
    await sink.send_event(ServerEvent(EventKind.ESCALATION, "s1", data={"reason": "repeated_failures"}))
