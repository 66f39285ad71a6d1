"""The server's gate: one aiohttp middleware that checks Origin and credentials before any handler runs.

A refused WebSocket therefore gets its 401 or 403 before the upgrade. The gate also mints the
browser page's session tokens, sets its login cookie, replaces aiohttp's `Server` header (which
names the Python and aiohttp versions) with a generic one, and closes upgraded sockets on an
unmasked client frame (frames.py). What it checks, per endpoint, is in docs/security.md.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from aiohttp import web

from voice_pipeline.app.settings import ServerSettings
from voice_pipeline.security.frames import enforce_masking
from voice_pipeline.security.origins import is_loopback_host, origin_allowed, parse_allowed_origins
from voice_pipeline.security.signatures import telnyx_signature_valid, twilio_signature_valid
from voice_pipeline.security.tokens import COOKIE, SESSION, TokenSigner, bearer_token, tokens_equal

log = logging.getLogger("voice_pipeline.security")
SERVER_HEADER = "voice-pipeline"
SESSION_TOKEN_PATH = "/v1/session-token"
COOKIE_NAME = "vp_auth"
COOKIE_TTL_S = 12 * 3600
OPEN_ROUTES = frozenset({"/health", "/ready"})  # probes from load balancers: no credentials, no Origin check
PAGE_ROUTES = frozenset({"/", "/static"})  # the browser client's files: public code, no secrets
# The page may not be framed by another site (a framed Start button is a microphone click-jack).
PAGE_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def route_of(request: web.Request) -> str | None:
    """The matched route's canonical path ("/static" for any static file); None when nothing matched."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def refusal(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="voice-pipeline"'} if status == 401 else {}
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


class Gate:
    def __init__(self, settings: ServerSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock  # Unix seconds: token expiry and Telnyx timestamps
        self.signer = TokenSigner(settings.auth_token)
        self.allowed_origins, _ = parse_allowed_origins(settings.allowed_origins)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(self.set_headers)
        app.router.add_post(SESSION_TOKEN_PATH, self.session_token)

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        route = route_of(request)
        if route in OPEN_ROUTES:
            return await handler(request)
        if route in PAGE_ROUTES:
            if route == "/" and "token" in request.query and self.settings.auth_token:
                return self.login(request)
            return await handler(request)
        if not self.origin_ok(request):
            log.info("refused %s %s: Origin %r is not allowed", request.method, request.path,
                     request.headers.get("Origin"))
            return refusal(403, "origin_not_allowed", "pages from this origin may not use this server")
        if not self.credentials_ok(request, route):
            log.info("refused %s %s from %s: no valid credentials", request.method, request.path, request.remote)
            return refusal(401, "unauthorized", "a valid token or provider signature is required (docs/security.md)")
        return await handler(request)

    def origin_ok(self, request: web.Request) -> bool:
        # With no token, only a loopback Host counts as the page's own origin (DNS rebinding).
        loopback_only = not self.settings.auth_token and not self.settings.insecure_no_auth
        return origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), self.allowed_origins,
                              loopback_only)

    def credentials_ok(self, request: web.Request, route: str | None) -> bool:
        """The bearer token always works; otherwise each endpoint has its own credential (or none without a token)."""
        settings = self.settings
        if tokens_equal(bearer_token(request.headers.get("Authorization")), settings.auth_token):
            return True
        if route == "/v1/twilio" and settings.twilio_auth_token:
            return twilio_signature_valid(settings.twilio_auth_token, request.headers.get("X-Twilio-Signature"),
                                          self.signed_url(request))
        if route == "/v1/telnyx" and settings.telnyx_public_key:
            # A WebSocket upgrade is a GET with no body: the signed text is "TIMESTAMP|".
            return telnyx_signature_valid(settings.telnyx_public_key, request.headers.get("telnyx-signature-ed25519"),
                                          request.headers.get("telnyx-timestamp"), b"", self.clock(),
                                          settings.telnyx_max_age_s)
        if not settings.auth_token:
            # No token: open, except /metrics, which answers only this machine.
            return route != "/metrics" or is_loopback_host(request.remote or "")
        if route == "/v1/realtime":
            return self.signer.valid(request.query.get("session_token"), SESSION, self.clock())
        if route == SESSION_TOKEN_PATH:
            return self.signer.valid(request.cookies.get(COOKIE_NAME), COOKIE, self.clock())
        return False

    def signed_url(self, request: web.Request) -> str:
        """The URL as the provider saw it: `server.public_url` (or wss://Host) followed by the path and query."""
        base = self.settings.public_url.rstrip("/") or f"wss://{request.host}"
        return base + request.raw_path

    def login(self, request: web.Request) -> web.Response:
        """`/?token=AUTH_TOKEN` sets the login cookie (HttpOnly, SameSite=Strict) and redirects to the bare
        page, so the token leaves the address bar; the cookie only mints session tokens."""
        if not tokens_equal(request.query.get("token"), self.settings.auth_token):
            log.info("refused a login from %s: wrong token", request.remote)
            return refusal(401, "unauthorized", "wrong token")
        response = web.Response(status=303, headers={"Location": "./", "Cache-Control": "no-store"})
        secure = request.secure or self.settings.public_url.startswith(("https:", "wss:"))
        response.set_cookie(COOKIE_NAME, self.signer.mint(COOKIE, COOKIE_TTL_S, self.clock()), max_age=COOKIE_TTL_S,
                            path="/", httponly=True, samesite="Strict", secure=secure)
        return response

    async def session_token(self, _request: web.Request) -> web.Response:
        """POST /v1/session-token: a token for one /v1/realtime upgrade (the middleware checked Origin and cookie)."""
        ttl_s = self.settings.session_token_ttl_s
        token = self.signer.mint(SESSION, ttl_s, self.clock())
        return web.json_response({"session_token": token, "expires_in_s": ttl_s}, headers={"Cache-Control": "no-store"})

    async def set_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: runs before aiohttp fills in its default `Server` header, and before
        a 101 is sent, which is when the unmasked-frame check goes in front of the socket."""
        response.headers["Server"] = SERVER_HEADER
        if isinstance(response, web.WebSocketResponse) and response.status == 101:
            enforce_masking(request.transport)
        if route_of(request) in PAGE_ROUTES:
            response.headers.update(PAGE_HEADERS)
