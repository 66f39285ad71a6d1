"""The security rules as pure functions: tokens, origins, provider signatures, start-up checks, frame masks."""

import base64
import os
import struct

import pytest

from voice_pipeline.security.exposure import startup_problems
from voice_pipeline.security.frames import FrameMaskCheck
from voice_pipeline.security.origins import binds_beyond_loopback, normalize_origin, origin_allowed
from voice_pipeline.security.signatures import (
    telnyx_key_problem,
    telnyx_signature_valid,
    twilio_signature,
    twilio_signature_valid,
)
from voice_pipeline.app.settings import ServerSettings
from voice_pipeline.security.tokens import COOKIE, SESSION, TokenSigner, bearer_token, tokens_equal

TOKEN = "a-long-enough-test-token-0123456789"


# -- tokens -------------------------------------------------------------------------------------------

def test_tokens_compare_exactly_and_an_empty_secret_matches_nothing():
    assert tokens_equal(TOKEN, TOKEN)
    assert not tokens_equal(TOKEN[:-1], TOKEN)
    assert not tokens_equal(TOKEN + "x", TOKEN)
    assert not tokens_equal("", "") and not tokens_equal(None, "") and not tokens_equal("x", "")


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("", None), (None, None),
])
def test_bearer_header(header, token):
    assert bearer_token(header) == token


def test_signed_tokens_expire_keep_their_purpose_and_their_key():
    signer = TokenSigner(TOKEN)
    token = signer.mint(SESSION, ttl_s=60, now_s=1000.0)
    assert signer.valid(token, SESSION, now_s=1059.0)
    assert not signer.valid(token, SESSION, now_s=1060.0)  # expired
    assert not signer.valid(token, COOKIE, now_s=1000.0)  # a session token is not a login cookie
    assert not TokenSigner(TOKEN + "2").valid(token, SESSION, now_s=1000.0)  # a new auth token revokes it
    assert TokenSigner(TOKEN).valid(token, SESSION, now_s=1000.0)  # replicas sharing the auth token agree
    forged = token.replace(".1060.", ".9999999999.")
    assert forged != token and not signer.valid(forged, SESSION, now_s=1000.0)
    for junk in ("", "v1.ws", token + "x", "v1.ws.abc.nonce.mac", None):
        assert not signer.valid(junk, SESSION, now_s=1000.0)


# -- origins ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host, beyond", [
    ("127.0.0.1", False), ("127.1.2.3", False), ("::1", False), ("localhost", False),
    ("0.0.0.0", True), ("", True), ("::", True), ("192.168.1.5", True), ("example.com", True),
])
def test_what_binds_beyond_loopback(host, beyond):
    assert binds_beyond_loopback(host) is beyond


@pytest.mark.parametrize("origin, normalized", [
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765"), ("HTTPS://Example.COM:443", "https://example.com"),
    ("http://example.com:80/", "http://example.com"), ("http://[::1]:8765", "http://[::1]:8765"),
    ("null", None), ("file://", None), ("http://example.com/path", None), ("ws://example.com", None),
])
def test_origins_are_normalized(origin, normalized):
    assert normalize_origin(origin) == normalized


@pytest.mark.parametrize("origin, host, allowed, loopback_only, ok", [
    (None, "127.0.0.1:8765", "", True, True),  # not a browser: the token rule alone decides
    ("http://127.0.0.1:8765", "127.0.0.1:8765", "", True, True),  # the page's own origin
    ("http://localhost:8765", "localhost:8765", "", True, True),
    ("http://evil.example", "127.0.0.1:8765", "", True, False),  # a foreign page
    ("http://127.0.0.1:9999", "127.0.0.1:8765", "", True, False),  # another port is another origin
    ("null", "127.0.0.1:8765", "", True, False),  # sandboxed frames, file:// pages
    ("http://evil.example:8765", "evil.example:8765", "", True, False),  # DNS rebinding onto loopback
    ("https://voice.example.com", "voice.example.com", "", False, True),  # with a token, any own origin
    ("https://voice.example.com", "voice.example.com:443", "", False, True),  # default port written out
    ("https://app.example.com", "voice.example.com", "https://app.example.com", False, True),  # listed
    ("https://app.example.com", "127.0.0.1:8765", "https://app.example.com", True, True),
    ("https://other.example.com", "voice.example.com", "https://app.example.com", False, False),
])
def test_origin_allow_list(origin, host, allowed, loopback_only, ok):
    allowed_set = frozenset(filter(None, [normalize_origin(allowed)])) if allowed else frozenset()
    assert origin_allowed(origin, host, allowed_set, loopback_only) is ok


# -- Twilio ---------------------------------------------------------------------------------------------

def test_twilio_signature_matches_the_published_vectors():
    # Twilio's documented example request (token 12345): URL, then POST keys and values sorted by key.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    params.update(Caller="+12349013030", From="+12349013030")
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_websocket_signature_is_over_the_url_alone():
    # base64(HMAC-SHA1("12345", "wss://voice.example.com/v1/twilio")), computed once from the documented algorithm.
    expected = "LlXgETQBie/lEXbglT20RkzJTMk="
    assert twilio_signature("12345", "wss://voice.example.com/v1/twilio") == expected
    assert twilio_signature_valid("12345", expected, "wss://voice.example.com/v1/twilio")
    assert twilio_signature_valid("12345", expected, "wss://voice.example.com:443/v1/twilio")  # port spelled out
    assert twilio_signature_valid("12345", expected, "https://voice.example.com/v1/twilio")  # scheme as http sees it
    assert not twilio_signature_valid("12346", expected, "wss://voice.example.com/v1/twilio")  # other auth token
    assert not twilio_signature_valid("12345", expected, "wss://voice.example.com/v1/telnyx")  # other path
    assert not twilio_signature_valid("12345", expected, "wss://evil.example/v1/twilio")  # other host
    assert not twilio_signature_valid("12345", None, "wss://voice.example.com/v1/twilio")
    assert not twilio_signature_valid("", expected, "wss://voice.example.com/v1/twilio")


# -- Telnyx ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def telnyx_keys():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    public_b64 = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    sign = lambda text: base64.b64encode(private.sign(text)).decode()  # noqa: E731
    return public_b64, sign


def test_telnyx_signature_is_ed25519_over_timestamp_bar_payload(telnyx_keys):
    public_b64, sign = telnyx_keys
    now_s = 1_700_000_000
    good = sign(f"{now_s}|".encode())
    assert telnyx_key_problem(public_b64) is None
    assert telnyx_signature_valid(public_b64, good, str(now_s), b"", now_s + 5, max_age_s=300)
    assert telnyx_signature_valid(public_b64, sign(f"{now_s}|{{\"a\":1}}".encode()), str(now_s), b'{"a":1}', now_s, 300)
    assert not telnyx_signature_valid(public_b64, good, str(now_s), b"x", now_s, 300)  # other payload
    assert not telnyx_signature_valid(public_b64, good, str(now_s + 1), b"", now_s, 300)  # other timestamp
    assert not telnyx_signature_valid(public_b64, good, str(now_s), b"", now_s + 301, 300)  # stale
    assert not telnyx_signature_valid(public_b64, good, str(now_s), b"", now_s - 301, 300)  # from the future
    assert not telnyx_signature_valid(public_b64, "not base64!", str(now_s), b"", now_s, 300)
    assert not telnyx_signature_valid(public_b64, None, str(now_s), b"", now_s, 300)
    assert not telnyx_signature_valid(public_b64, good, "soon", b"", now_s, 300)
    other_key = base64.b64encode(os.urandom(32)).decode()
    assert not telnyx_signature_valid(other_key, good, str(now_s), b"", now_s, 300)


def test_unusable_telnyx_keys_are_named():
    assert "base64" in telnyx_key_problem("not a key!")
    assert "32" in telnyx_key_problem(base64.b64encode(b"short").decode())


# -- start-up checks ----------------------------------------------------------------------------------

def problems(**server):
    return startup_problems(ServerSettings(**server))


def test_refuses_to_listen_beyond_loopback_without_a_token_and_says_how_to_fix_it():
    errors, _ = problems(host="0.0.0.0")
    assert len(errors) == 1
    assert "VP_SERVER_AUTH_TOKEN" in errors[0] and "VP_SERVER_INSECURE_NO_AUTH" in errors[0]
    assert problems(host="127.0.0.1") == ([], [])


def test_the_insecure_opt_in_starts_with_loud_warnings():
    errors, warnings = problems(host="0.0.0.0", insecure_no_auth=True)
    assert errors == []
    assert any(w.startswith("INSECURE") for w in warnings)
    assert any("/v1/twilio" in w and "anyone" in w for w in warnings)


def test_phone_endpoints_beyond_loopback_without_their_secret_are_warned_about():
    errors, warnings = problems(host="0.0.0.0", auth_token=TOKEN)
    assert errors == []
    assert any("/v1/twilio" in w and "twilio_auth_token" in w for w in warnings)
    assert any("/v1/telnyx" in w and "telnyx_public_key" in w for w in warnings)
    _, warnings = problems(host="0.0.0.0", auth_token=TOKEN, twilio_auth_token="t",
                           telnyx_public_key=base64.b64encode(bytes(32)).decode())
    assert warnings == []


def test_bad_settings_stop_the_start():
    errors, _ = problems(allowed_origins="https://ok.example, not-an-origin")
    assert any("not-an-origin" in e for e in errors)
    errors, _ = problems(telnyx_public_key="???")
    assert any("telnyx_public_key" in e for e in errors)
    _, warnings = problems(auth_token="short")
    assert any("shorter" in w for w in warnings)


def test_secrets_stay_out_of_the_settings_repr():
    text = repr(ServerSettings(auth_token=TOKEN, twilio_auth_token="twilio-secret"))
    assert TOKEN not in text and "twilio-secret" not in text


# -- unmasked frames --------------------------------------------------------------------------------

def frame(payload: bytes, masked: bool = True, opcode: int = 0x2) -> bytes:
    n = len(payload)
    if n < 126:
        length = bytes([n])
    else:
        length = bytes([126]) + struct.pack("!H", n) if n < 65536 else bytes([127]) + struct.pack("!Q", n)
    first = bytes([0x80 | opcode, length[0] | (0x80 if masked else 0)]) + length[1:]
    if not masked:
        return first + payload
    key = os.urandom(4)
    return first + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096, 1 << 20])
def test_masked_frames_pass_in_any_chunking_and_the_first_unmasked_one_is_caught(chunk):
    stream = b"".join(frame(b"x" * n) for n in (0, 5, 125, 126, 300, 65535, 65536, 70000))
    check = FrameMaskCheck()
    assert not any(check.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk))
    bad = frame(b"hello", masked=False, opcode=0x1)
    assert any(check.feed(bad[i:i + chunk]) for i in range(0, len(bad), chunk))


def test_an_unmasked_frame_after_a_masked_one_in_the_same_chunk_is_caught():
    assert FrameMaskCheck().feed(frame(b"ok") + frame(b"", masked=False, opcode=0x9))
