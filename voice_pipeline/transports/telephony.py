"""Phone calls for the server: the /v1/twilio and /v1/telnyx endpoints, the SIP agent, and escalation.

`escalate(session_id, reason)` is how the rest of the pipeline (the fallback cascade's escalation)
hands a caller to a person: a SIP REFER to `telephony.transfer_uri` for SIP calls; for media
streams it is logged and refused (the providers' transfer needs their REST API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from voice_pipeline.transports.media_stream import MediaStreamHandler, media_stream_endpoint
from voice_pipeline.transports.sip import SipService

if TYPE_CHECKING:
    from voice_pipeline.app.host import SessionHost


class TelephonyService:
    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.sip = SipService(host)
        self.media_calls: set[MediaStreamHandler] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/twilio", self.twilio)
        app.router.add_get("/v1/telnyx", self.telnyx)

    async def twilio(self, request: web.Request) -> web.WebSocketResponse:
        return await media_stream_endpoint(self.host, request, "twilio", self.media_calls)

    async def telnyx(self, request: web.Request) -> web.WebSocketResponse:
        return await media_stream_endpoint(self.host, request, "telnyx", self.media_calls)

    async def start(self) -> None:
        await self.sip.start()

    async def stop(self) -> None:
        await self.sip.stop()

    def escalate(self, session_id: str, reason: str) -> bool:
        """Transfer the call whose session is `session_id` to a person; False if not a call or not possible."""
        for call in [*self.sip.calls, *self.media_calls]:
            if call.session is not None and call.session.session_id == session_id:
                return call.escalate(reason)
        return False
