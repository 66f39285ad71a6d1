"""SIP user agent that answers calls (signalling by aiosipua; SDP plan and call handling here)."""

from voice_pipeline.telephony.sip.agent import SipAgent, SipCall
from voice_pipeline.telephony.sip.sdp import MediaPlan, answer_offer

__all__ = ["MediaPlan", "SipAgent", "SipCall", "answer_offer"]
