"""Start-up checks: refuse to serve beyond loopback without a token, and warn about what stays open."""

from __future__ import annotations

import logging

from voice_pipeline.app.settings import ServerSettings
from voice_pipeline.errors import ConfigError
from voice_pipeline.security.origins import binds_beyond_loopback, parse_allowed_origins
from voice_pipeline.security.signatures import telnyx_key_problem

log = logging.getLogger("voice_pipeline.security")
MIN_TOKEN_CHARS = 16


def startup_problems(server: ServerSettings) -> tuple[list[str], list[str]]:
    """(errors that stop the start, warnings to log). Pure: settings in, sentences out."""
    errors: list[str] = []
    warnings: list[str] = []
    beyond = binds_beyond_loopback(server.host)
    if beyond and not server.auth_token and not server.insecure_no_auth:
        errors.append(
            f"refusing to listen on {server.host or 'every interface'!r}, beyond loopback, without an auth token: "
            "set VP_SERVER_AUTH_TOKEN (server.auth_token; see docs/security.md), or set "
            "VP_SERVER_INSECURE_NO_AUTH=true to accept that anyone who reaches the port can use the assistant")
    elif beyond and not server.auth_token:
        warnings.append(f"INSECURE: listening on {server.host or 'every interface'!r} with no auth token "
                        "(server.insecure_no_auth): anyone who reaches the port can use the assistant")
    if server.auth_token and len(server.auth_token) < MIN_TOKEN_CHARS:
        warnings.append(f"server.auth_token is shorter than {MIN_TOKEN_CHARS} characters: use a long random one "
                        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    _, bad_origins = parse_allowed_origins(server.allowed_origins)
    if bad_origins:
        errors.append(f"server.allowed_origins: not an origin (scheme://host[:port]): {', '.join(bad_origins)}")
    if server.telnyx_public_key and (problem := telnyx_key_problem(server.telnyx_public_key)):
        errors.append(problem)
    if beyond:
        warnings += _phone_warnings(server)
    return errors, warnings


def _phone_warnings(server: ServerSettings) -> list[str]:
    """Media-stream endpoints reachable from other machines without their provider's secret."""
    who = ("only a request with the bearer token can open a call" if server.auth_token
           else "anyone who reaches the port can open a call")
    warnings = []
    if not server.twilio_auth_token:
        twilio_who = f"{who} (Twilio cannot send one)" if server.auth_token else who
        warnings.append(f"/v1/twilio is reachable beyond loopback and server.twilio_auth_token is not set: "
                        f"X-Twilio-Signature is not verified; {twilio_who}")
    if not server.telnyx_public_key:
        warnings.append(f"/v1/telnyx is reachable beyond loopback and server.telnyx_public_key is not set: "
                        f"the Telnyx signature is not verified; {who}")
    return warnings


def enforce(server: ServerSettings) -> None:
    """Log every warning at WARNING; raise ConfigError (the server must not start) on any error."""
    errors, warnings = startup_problems(server)
    for warning in warnings:
        log.warning("%s", warning)
    if errors:
        raise ConfigError("; ".join(errors))
