"""Provider signatures on the media-stream upgrades: Twilio's X-Twilio-Signature and Telnyx's ed25519."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's documented algorithm: base64(HMAC-SHA1(auth token, URL + each POST key and value, sorted by key)).

    A WebSocket upgrade is a GET, so for the media streams `params` is empty: the URL alone is signed.
    """
    data = url + "".join(key + value for key, value in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_url_variants(url: str) -> list[str]:
    """The URL Twilio may have signed: as given, with wss:// and https:// (the TwiML says wss://), and
    with the default port written out or left off (Twilio's own validators try both)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    variants = []
    for scheme in dict.fromkeys([parts.scheme, "wss", "https"]):
        port = parts.port or _DEFAULT_PORTS.get(scheme)
        for netloc in dict.fromkeys([parts.netloc, host, f"{host}:{port}" if port else host]):
            variants.append(urlunsplit((scheme, netloc, parts.path, parts.query, "")))
    return list(dict.fromkeys(variants))


def twilio_signature_valid(auth_token: str, signature: str | None, url: str) -> bool:
    """Whether `signature` is Twilio's signature of `url` (or of one of its equivalent spellings)."""
    if not auth_token or not signature:
        return False
    given = signature.strip().encode()
    matches = [hmac.compare_digest(twilio_signature(auth_token, v).encode(), given) for v in twilio_url_variants(url)]
    return any(matches)


def telnyx_key_problem(public_key_b64: str) -> str | None:
    """Why `server.telnyx_public_key` cannot be used (None when it can): it must be the base64 of 32 bytes."""
    try:
        raw = base64.b64decode(public_key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "server.telnyx_public_key is not base64"
    if len(raw) != 32:
        return f"server.telnyx_public_key decodes to {len(raw)} bytes; an ed25519 public key has 32"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return "server.telnyx_public_key is set but the `cryptography` package is not installed"
    return None


def telnyx_signature_valid(public_key_b64: str, signature_b64: str | None, timestamp: str | None,
                           payload: bytes, now_s: float, max_age_s: float) -> bool:
    """Telnyx's documented check: the ed25519 signature of `TIMESTAMP|PAYLOAD` by the account's public key,
    with TIMESTAMP (Unix seconds, header telnyx-timestamp) within `max_age_s` of now, either way."""
    if not public_key_b64 or not signature_b64 or not timestamp or not timestamp.strip().isdigit():
        return False
    if abs(now_s - int(timestamp)) > max_age_s:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64.strip(), validate=True))
        key.verify(base64.b64decode(signature_b64.strip(), validate=True), timestamp.strip().encode() + b"|" + payload)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
