"""SIP user agent that answers calls (signalling by aiosipua; screening, SDP plan and call handling here)."""

from voice_pipeline.telephony.sip.agent import SipAgent, SipCall
from voice_pipeline.telephony.sip.peers import PeerFilter
from voice_pipeline.telephony.sip.screen import Rejection
from voice_pipeline.telephony.sip.sdp import MediaPlan, answer_offer

__all__ = ["MediaPlan", "PeerFilter", "Rejection", "SipAgent", "SipCall", "answer_offer"]
