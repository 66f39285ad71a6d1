"""SDP offer/answer for phone calls: PCMU/8000 (payload 0), telephone-event, 20 ms packets.

Pure: text in, text out. Parsing and serialising are aiosipua's (RFC 4566/3264); the choice of
codec and the answer's shape are ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiosipua import SdpMessage, negotiate_sdp, parse_sdp, serialize_sdp
from aiosipua.sdp_negotiate import SdpNegotiationError

from voice_pipeline.errors import ProtocolError
from voice_pipeline.telephony.rtp import PCMU_PAYLOAD_TYPE

DEFAULT_DTMF_PAYLOAD_TYPE = 101
PTIME_MS = 20


@dataclass(frozen=True)
class MediaPlan:
    """What both sides agreed on: where to send RTP and which payload types to expect."""

    remote_rtp: tuple[str, int]
    audio_payload_type: int
    dtmf_payload_type: int | None
    ptime_ms: int


def _offered_dtmf_payload_type(offer: SdpMessage) -> int | None:
    audio = offer.audio
    if audio is None:
        return None
    for codec in audio.codecs:
        if codec.encoding_name.lower() == "telephone-event" and codec.clock_rate in (0, 8000):
            return codec.payload_type
    return None


def answer_offer(offer_text: str, *, local_ip: str, rtp_port: int, session_id: str = "0") -> tuple[str, MediaPlan]:
    """Answer an SDP offer with PCMU and, if offered, telephone-event (same payload type as offered).

    Raises ProtocolError("sdp_not_acceptable") when the offer has no audio, no PCMU or no address;
    the caller answers that with 488 Not Acceptable Here.
    """
    try:
        offer = parse_sdp(offer_text)
    except (ValueError, IndexError) as exc:
        raise ProtocolError("sdp_not_acceptable", f"unparsable SDP offer: {exc}") from None
    dtmf_pt = _offered_dtmf_payload_type(offer)
    try:
        answer, chosen_pt = negotiate_sdp(
            offer,
            local_ip=local_ip,
            rtp_port=rtp_port,
            supported_codecs=[PCMU_PAYLOAD_TYPE],
            dtmf_payload_type=dtmf_pt or 0,
            ptime=PTIME_MS,
            session_id=session_id,
        )
    except SdpNegotiationError as exc:
        raise ProtocolError("sdp_not_acceptable", str(exc)) from None
    remote = offer.rtp_address
    if remote is None or remote[1] == 0:
        raise ProtocolError("sdp_not_acceptable", "SDP offer has no audio address")
    ptime_values = answer.audio.attributes.get("ptime", []) if answer.audio else []
    ptime_ms = int(ptime_values[0]) if ptime_values and ptime_values[0].isdigit() else PTIME_MS
    return serialize_sdp(answer), MediaPlan(remote, chosen_pt, dtmf_pt, ptime_ms)
