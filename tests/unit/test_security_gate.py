"""The gate on the server's own routes, in process (no models): Origin, tokens, signatures, headers, masks."""

import asyncio
import base64
import os
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voice_pipeline.app.server import PipelineServer
from voice_pipeline.app.settings import ServerSettings, Settings
from voice_pipeline.security.gate import Gate
from voice_pipeline.security.signatures import twilio_signature

TOKEN = "gate-test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def client_for(**server_settings) -> TestClient:
    settings = Settings()
    for name, value in server_settings.items():
        setattr(settings.server, name, value)
    client = TestClient(TestServer(PipelineServer(settings).app()))
    await client.start_server()
    return client


@pytest.fixture
async def open_server():
    client = await client_for()
    yield client
    await client.close()


@pytest.fixture
async def token_server():
    client = await client_for(auth_token=TOKEN)
    yield client
    await client.close()


def own_origin(client: TestClient) -> str:
    return f"http://{client.host}:{client.port}"


async def upgrade_status(client: TestClient, path: str = "/v1/realtime", **kwargs) -> int:
    """101 when the WebSocket opens, else the HTTP status the upgrade got."""
    try:
        ws = await client.ws_connect(path, **kwargs)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def test_loopback_without_token_stays_open_to_local_clients(open_server):
    assert await upgrade_status(open_server) == 101  # Python client, talk, bench: no Origin, no token
    assert await upgrade_status(open_server, headers={"Origin": own_origin(open_server)}) == 101  # the page
    assert (await open_server.get("/metrics")).status == 200  # from this machine
    assert (await open_server.get("/health")).status == 200


async def test_foreign_origins_are_refused_before_the_upgrade(open_server):
    for origin in ("http://evil.example", "null", f"http://{open_server.host}:1"):
        assert await upgrade_status(open_server, headers={"Origin": origin}) == 403
        for path in ("/v1/twilio", "/v1/telnyx"):
            assert await upgrade_status(open_server, path, headers={"Origin": origin}) == 403


async def test_a_dns_rebinding_page_is_not_the_pages_own_origin(open_server):
    host = f"evil.example:{open_server.port}"  # evil.example resolved to 127.0.0.1
    assert await upgrade_status(open_server, headers={"Origin": f"http://{host}", "Host": host}) == 403


async def test_allowed_origins_are_added_to_the_pages_own():
    client = await client_for(allowed_origins="https://app.example.com, http://localhost:3000")
    try:
        assert await upgrade_status(client, headers={"Origin": "http://localhost:3000"}) == 101
        assert await upgrade_status(client, headers={"Origin": "https://app.example.com"}) == 101
        assert await upgrade_status(client, headers={"Origin": "https://other.example.com"}) == 403
    finally:
        await client.close()


async def test_with_a_token_every_socket_and_metrics_need_it(token_server):
    for path in ("/v1/realtime", "/v1/twilio", "/v1/telnyx"):
        assert await upgrade_status(token_server, path) == 401
        assert await upgrade_status(token_server, path, headers={"Authorization": "Bearer wrong"}) == 401
        assert await upgrade_status(token_server, path, headers=BEARER) == 101
    assert (await token_server.get("/metrics")).status == 401
    assert (await token_server.get("/metrics", headers=BEARER)).status == 200
    assert (await token_server.get("/nowhere")).status == 401  # unknown routes are closed too
    for path in ("/health", "/ready", "/", "/static/app.js"):  # probes and the page's public files stay open
        assert (await token_server.get(path)).status in (200, 503)
    assert await upgrade_status(token_server, headers={**BEARER, "Origin": "http://evil.example"}) == 403


async def test_the_page_logs_in_with_a_cookie_and_opens_the_socket_with_a_session_token(token_server):
    origin = {"Origin": own_origin(token_server)}
    assert (await token_server.post("/v1/session-token", headers=origin)).status == 401  # no cookie yet
    assert (await token_server.get("/?token=wrong", allow_redirects=False)).status == 401
    login = await token_server.get(f"/?token={TOKEN}", allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "./"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert (await token_server.post("/v1/session-token", headers={"Origin": "http://evil.example"})).status == 403
    minted = await token_server.post("/v1/session-token", headers=origin)
    assert minted.status == 200 and minted.headers["Cache-Control"] == "no-store"
    session_token = (await minted.json())["session_token"]
    token_server.session.cookie_jar.clear()  # the socket needs the session token, not the cookie
    assert await upgrade_status(token_server, f"/v1/realtime?session_token={session_token}", headers=origin) == 101
    assert await upgrade_status(token_server, f"/v1/realtime?session_token={session_token}x", headers=origin) == 401
    assert await upgrade_status(token_server, f"/v1/twilio?session_token={session_token}") == 401  # browser only


async def test_session_tokens_expire():
    settings = ServerSettings(auth_token=TOKEN, session_token_ttl_s=60)
    now = [1000.0]
    gate = Gate(settings, clock=lambda: now[0])
    app = web.Application()
    gate.install(app)
    app.router.add_get("/v1/realtime", answer_in)
    async with TestClient(TestServer(app)) as client:
        token = (await (await client.post("/v1/session-token", headers=BEARER)).json())["session_token"]
        assert (await client.get(f"/v1/realtime?session_token={token}")).status == 200
        now[0] += 61
        assert (await client.get(f"/v1/realtime?session_token={token}")).status == 401


async def answer_in(_request: web.Request) -> web.Response:
    return web.Response(text="in")


async def test_twilio_upgrades_need_the_signature_of_the_public_url():
    client = await client_for(twilio_auth_token="twilio-secret", public_url="wss://voice.example.com")
    try:
        good = twilio_signature("twilio-secret", "wss://voice.example.com/v1/twilio")
        assert await upgrade_status(client, "/v1/twilio") == 401
        assert await upgrade_status(client, "/v1/twilio", headers={"X-Twilio-Signature": good}) == 101
        assert await upgrade_status(client, "/v1/twilio", headers={"X-Twilio-Signature": good[:-2] + "A="}) == 401
        other = twilio_signature("twilio-secret", f"wss://{client.host}:{client.port}/v1/twilio")
        assert await upgrade_status(client, "/v1/twilio", headers={"X-Twilio-Signature": other}) == 401
    finally:
        await client.close()


async def test_telnyx_upgrades_need_a_fresh_ed25519_signature():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public_b64 = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    client = await client_for(telnyx_public_key=public_b64)

    def signed(timestamp: int) -> dict:
        signature = base64.b64encode(key.sign(f"{timestamp}|".encode())).decode()
        return {"telnyx-signature-ed25519": signature, "telnyx-timestamp": str(timestamp)}

    try:
        assert await upgrade_status(client, "/v1/telnyx") == 401
        assert await upgrade_status(client, "/v1/telnyx", headers=signed(int(time.time()))) == 101
        assert await upgrade_status(client, "/v1/telnyx", headers=signed(int(time.time()) - 3600)) == 401
    finally:
        await client.close()


async def test_the_server_header_names_no_versions(token_server):
    responses = [await token_server.get(path) for path in ("/health", "/metrics", "/nowhere", "/")]
    responses.append(await token_server.get("/v1/realtime", headers={"Origin": "http://evil.example"}))
    for response in responses:
        assert response.headers["Server"] == "voice-pipeline"
    assert responses[-2].headers["X-Frame-Options"] == "DENY"  # the page cannot be framed by another site


async def test_an_unmasked_client_frame_closes_the_socket_with_1002():
    async def echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws

    app = web.Application()
    Gate(ServerSettings()).install(app)
    app.router.add_get("/v1/realtime", echo)
    server = TestServer(app)
    await server.start_server()
    try:
        reader, writer = await raw_upgrade(server.port)
        writer.write(masked_text(b"hi"))
        assert await asyncio.wait_for(reader.read(100), 5) == b"\x81\x07echo:hi"
        writer.write(b"\x81\x05hello")  # FIN + text, no mask bit, 5 bytes
        assert await asyncio.wait_for(reader.read(100), 5) == b"\x88\x10\x03\xeaunmasked frame"  # Close 1002
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # and the connection is closed
        writer.close()
    finally:
        await server.close()


async def raw_upgrade(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
