"""SIP calls: the SIP agent answers, and each call runs a Session over its RTP endpoint.

Caller audio: RTP (20 ms PCMU, jitter-buffered by the endpoint) -> 16 kHz -> the session.
Reply audio: the session's 8 kHz frames -> 20 ms PCMU frames -> the endpoint's paced sender.
Barge-in flushes the sender's queue; what the caller heard is what was sent since the reply
began, less the sender's lead. DTMF: the transfer digit (default '0') asks for a person, which
is a SIP REFER to `telephony.transfer_uri`; other digits are logged.

Exposure: the agent binds `telephony.sip_host` (default 127.0.0.1) and answers only loopback
peers and those in `telephony.sip_allowed_peers`; anyone else gets 403. Capacity is checked
before an INVITE is answered: 486 Busy Here when full, 503 with Retry-After while loading.
Dropped and refused SIP messages count in `vp_errors_total` under their code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np

from voice_pipeline.telephony.phone_audio import PHONE_RATE_HZ, PhoneAudioIn, PhoneAudioOut
from voice_pipeline.telephony.rtp_endpoint import RtpAudio, RtpDtmf
from voice_pipeline.telephony.sip import PeerFilter, Rejection, SipAgent, SipCall
from voice_pipeline.telephony.sip.peers import bound_to_loopback
from voice_pipeline.transports.phone import PHONE_SESSION_CONFIG, PhoneSink, on_dtmf

if TYPE_CHECKING:
    from voice_pipeline.app.host import SessionHost
    from voice_pipeline.session.session import Session

log = logging.getLogger("voice_pipeline.telephony")
SENDER_LEAD_MS = 40.0  # RtpEndpoint's default lead: sent, but not yet played by the phone
NOT_READY_RETRY_AFTER_S = 10  # 503 while the models load: callers may try again after this


def sip_admission(host: SessionHost, answering: int) -> Rejection | None:
    """Whether one more SIP call fits, counting the `answering` calls admitted whose session has not started."""
    code = host.refusal(reserved=answering)  # calls being answered hold their place: a burst cannot overbook
    if code in ("not_ready", "server_draining"):  # this server, not the line, is unavailable: try again
        return Rejection(503, "Service Unavailable", code=code, retry_after_s=NOT_READY_RETRY_AFTER_S)
    return None if code is None else Rejection(486, "Busy Here", code=code)


class SipLine:
    """Reply audio to the caller as paced RTP; a barge-in flushes what is still queued."""

    def __init__(self, call: SipCall, lead_ms: float = SENDER_LEAD_MS) -> None:
        self.media, self.lead_ms = call.media, lead_ms
        self._out = PhoneAudioOut(PHONE_RATE_HZ)
        self._reply_id: str | None = None
        self._reply_start_ms = 0.0  # the endpoint's sent audio at which this reply begins
        self.refused_frames = 0

    async def reply_started(self, response_id: str) -> None:
        self._out.reset()
        self._reply_id = response_id
        self._reply_start_ms = self.media.sent_audio_ms + self.media.queued_audio_ms

    async def reply_audio(self, samples: np.ndarray) -> None:
        self._queue(self._out.encode(samples))

    async def reply_ended(self) -> None:
        self._queue(self._out.finish())

    async def reply_cleared(self, response_id: str) -> float:
        self._out.reset()
        self.media.flush_audio()
        if response_id != self._reply_id:
            return 0.0  # cleared before any of its audio was sent
        return max(0.0, self.media.sent_audio_ms - self._reply_start_ms - self.lead_ms)

    def _queue(self, frames: list[bytes]) -> None:
        for frame in frames:
            if not self.media.send_audio(frame):
                self.refused_frames += 1  # the sender's queue is bounded; the session paces far below it


class SipCallHandler:
    """One answered call: a Session fed from RTP until either side hangs up."""

    def __init__(self, host: SessionHost, call: SipCall) -> None:
        self.host, self.call = host, call
        self.label = f"sip-call-{call.call_id}"
        self.session: Session | None = None

    async def run(self) -> None:
        line = SipLine(self.call)
        async with self.host.session("sip-", lambda session: PhoneSink(line, session, self.escalate),
                                     start=PHONE_SESSION_CONFIG) as (session, runner):
            self.session, self.label = session, session.session_id
            log.info("call %s started (sip)", self.label)
            await self._relay(session, runner)
            log.info("call %s ended (rtp: %s)", self.label, self.call.media.stats)

    def escalate(self, reason: str) -> bool:
        """Blind transfer (SIP REFER) to `telephony.transfer_uri`; False when none is set."""
        uri = self.host.settings.telephony.transfer_uri
        if not uri:
            log.warning("call %s: escalation (%s) asked but telephony.transfer_uri is not set", self.label, reason)
            return False
        log.info("call %s: transferring (%s)", self.label, reason)
        self.call.transfer(uri)
        return True

    async def _relay(self, session: Session, runner: asyncio.Task) -> None:
        telephony, server = self.host.settings.telephony, self.host.settings.server
        audio_in = PhoneAudioIn()
        while (event := await self.call.media.read()) is not None and not runner.done():
            if isinstance(event, RtpAudio):
                session.feed_samples(audio_in.decode(event.audio_mulaw))
            elif isinstance(event, RtpDtmf):
                on_dtmf(self, event.digit, telephony.transfer_digit, server.log_transcripts)


class SipService:
    """The SIP agent for the server's lifetime, and the calls it is running."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.agent: SipAgent | None = None
        self.calls: set[SipCallHandler] = set()

    async def start(self) -> SipAgent | None:
        """Start listening if enabled; a bad address, a bad allow-list or a taken port is logged and SIP stays off."""
        settings = self.host.settings.telephony
        if not settings.sip_enabled:
            return None
        try:
            peers = PeerFilter.parse(settings.sip_allowed_peers)
            agent = SipAgent(self._on_call, host=settings.sip_host, port=settings.sip_port,
                             advertised_host=settings.sip_advertised_host or None, peers=peers,
                             admit=lambda answering: sip_admission(self.host, answering), on_fault=self._count)
            await agent.start()
        except (OSError, ValueError) as exc:
            log.error("SIP agent not started on %s:%s: %s", settings.sip_host, settings.sip_port, exc)
            return None
        self.agent = agent
        log.info("SIP agent listening at %s", agent.uri)
        if not bound_to_loopback(settings.sip_host) and not peers.networks:
            log.warning("SIP agent bound to %s, beyond loopback, but telephony.sip_allowed_peers is empty: only "
                        "loopback peers are answered, everyone else gets 403 Forbidden. List the PBX or trunk "
                        "addresses (VP_TELEPHONY_SIP_ALLOWED_PEERS, IPs or CIDRs; 0.0.0.0/0 allows anyone).",
                        settings.sip_host)
        return agent

    def _count(self, code: str) -> None:
        self.host.metrics.errors.labels(code).inc()

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
            self.agent = None

    async def _on_call(self, call: SipCall) -> None:
        code = self.host.refusal()
        if code is not None:
            self.host.metrics.errors.labels(code).inc()
            log.info("sip call %s refused: %s", call.call_id, code)
            return  # the agent hangs up when the handler returns
        handler = SipCallHandler(self.host, call)
        self.calls.add(handler)
        try:
            await handler.run()
        finally:
            self.calls.discard(handler)
