"""SDP offer/answer for phone calls: PCMU/8000 (payload 0), telephone-event, 20 ms packets.

Pure: text in, text out. Parsing and serialising are aiosipua's (RFC 4566/3264); the choice of
codec, the answer's shape and what makes an offer usable are ours. An offer is refused unless its
first audio stream is plain RTP (`RTP/AVP`) to an IPv4 literal (never a name: no DNS look-up on
the event loop) and a port in 1-65535, with payload types 0-127: what the RTP sender can use.
"""

from __future__ import annotations

import ipaddress
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


def _remote_rtp(offer: SdpMessage) -> tuple[str, int]:
    """Where the offer's first audio stream wants RTP; ProtocolError when it is unusable."""
    audio = offer.audio
    if audio is None:
        raise ProtocolError("sdp_not_acceptable", "SDP offer has no audio stream")
    if audio.proto != "RTP/AVP":
        raise ProtocolError("sdp_not_acceptable", "SDP audio is not plain RTP/AVP")
    if not 1 <= audio.port <= 65535:
        raise ProtocolError("sdp_not_acceptable", "SDP audio port is not 1-65535")
    if not all(fmt.isascii() and fmt.isdigit() and int(fmt) <= 127 for fmt in audio.formats):
        raise ProtocolError("sdp_not_acceptable", "SDP audio payload types are not 0-127")
    pcmu = [codec for codec in audio.codecs if codec.payload_type == PCMU_PAYLOAD_TYPE]
    if any((codec.encoding_name.upper(), codec.clock_rate) != ("PCMU", 8000) for codec in pcmu):
        raise ProtocolError("sdp_not_acceptable", "SDP maps payload type 0 to something other than PCMU/8000")
    connection = audio.connection or offer.connection
    if connection is None or (connection.net_type, connection.addr_type) != ("IN", "IP4"):
        raise ProtocolError("sdp_not_acceptable", "SDP offer has no IPv4 audio address")
    try:
        address = ipaddress.IPv4Address(connection.address)
    except ValueError:
        raise ProtocolError("sdp_not_acceptable", "SDP audio address is not an IPv4 literal") from None
    if address.is_unspecified or address.is_multicast:
        raise ProtocolError("sdp_not_acceptable", "SDP audio address is not a unicast host")
    return str(address), audio.port


def answer_offer(offer_text: str, *, local_ip: str, rtp_port: int, session_id: str = "0") -> tuple[str, MediaPlan]:
    """Answer an SDP offer with PCMU and, if offered, telephone-event (same payload type as offered).

    Raises ProtocolError("sdp_not_acceptable") when the offer is unparsable or has no usable audio
    (see the module docstring) or no PCMU; the caller answers that with 488 Not Acceptable Here.
    The messages name what is wrong, never the offer's text.
    """
    try:
        offer = parse_sdp(offer_text)
    except (ValueError, IndexError, TypeError) as exc:
        raise ProtocolError("sdp_not_acceptable", f"unparsable SDP offer ({type(exc).__name__})") from None
    remote = _remote_rtp(offer)
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
    if answer.audio is not None:
        answer.audio.attributes["ptime"] = [str(PTIME_MS)]  # what the sender sends, whatever was offered
    return serialize_sdp(answer), MediaPlan(remote, chosen_pt, dtmf_pt, PTIME_MS)
