"""Bearer tokens and short-lived signed session tokens, always compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SESSION = "ws"  # a session token: opens one /v1/realtime socket (query parameter `session_token`)
COOKIE = "cookie"  # the browser's login cookie, set by `/?token=...`; it can only mint session tokens
_KEY_LABEL = b"voice-pipeline signed tokens v1"


def tokens_equal(given: str | None, expected: str) -> bool:
    """True when `given` is the expected secret; an empty secret never matches anything."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenSigner:
    """Mints and checks `v1.PURPOSE.EXPIRY.NONCE.MAC` tokens (HMAC-SHA256, EXPIRY in Unix seconds).

    The key is derived from the server's auth token, so changing the auth token revokes every
    token and cookie, and replicas that share the auth token accept each other's tokens. With no
    auth token a random key serves the process.
    """

    def __init__(self, auth_token: str) -> None:
        secret = auth_token.encode() if auth_token else secrets.token_bytes(32)
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()

    def mint(self, purpose: str, ttl_s: float, now_s: float) -> str:
        body = f"v1.{purpose}.{int(now_s + ttl_s)}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, token: str | None, purpose: str, now_s: float) -> bool:
        """Signed by this key, for this purpose, and not yet expired."""
        body, _, mac = (token or "").rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != "v1" or parts[1] != purpose or not parts[2].isdigit():
            return False
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return False
        return now_s < int(parts[2])

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
