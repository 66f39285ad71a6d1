"""Telephony bridge: mu-law, media-stream codecs (Twilio, Telnyx), SIP signalling and RTP."""
