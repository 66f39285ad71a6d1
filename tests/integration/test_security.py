"""The real server with its real models, started with an auth token on loopback: who gets in and who
does not. And `serve` beyond loopback without a token: it refuses to start, before loading anything."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import subprocess

import pytest
import websockets

from tests.integration.conftest import REPO, TEST_SERVER_ENV, VOICE_PIPELINE, free_port, start_server, stop_server
from voice_pipeline_client.realtime import RealtimeClient

pytestmark = pytest.mark.integration
TOKEN = "integration-test-token-0123456789abcdef"
SECURITY_ENV = ("VP_SERVER_AUTH_TOKEN", "VP_SERVER_INSECURE_NO_AUTH")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("secure"), VP_SERVER_AUTH_TOKEN=TOKEN, VP_SERVER_MAX_SESSIONS="2")
    yield running
    stop_server(running)


def request(server, method: str, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


async def upgrade_status(url: str, **kwargs) -> int:
    """101 if the WebSocket opens; otherwise the HTTP status of the refused upgrade."""
    try:
        async with websockets.connect(url, open_timeout=10, **kwargs):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_a_foreign_origin_is_refused_before_the_upgrade(server):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/v1/realtime", "/v1/twilio", "/v1/telnyx"):
        url = f"ws://127.0.0.1:{server.port}{path}"
        status = asyncio.run(upgrade_status(url, origin="http://evil.example", additional_headers=bearer))
        assert status == 403, path


def test_a_missing_or_wrong_token_is_refused(server):
    for path in ("/v1/realtime", "/v1/twilio", "/v1/telnyx"):
        url = f"ws://127.0.0.1:{server.port}{path}"
        assert asyncio.run(upgrade_status(url)) == 401, path
        assert asyncio.run(upgrade_status(url, additional_headers={"Authorization": "Bearer nope"})) == 401, path


def test_the_bearer_token_opens_a_session(server):
    async def session() -> dict:
        async with RealtimeClient(server.ws, token=TOKEN) as client:
            return await client.start()

    assert asyncio.run(session())["type"] == "session.created"


def test_the_page_logs_in_and_opens_a_session_with_a_signed_session_token(server):
    login = request(server, "GET", f"/?token={TOKEN}")
    assert login.status == 303
    cookie = login.headers["Set-Cookie"].split(";")[0]
    origin = {"Origin": server.http}
    assert request(server, "POST", "/v1/session-token", origin).status == 401  # no cookie: no token
    minted = request(server, "POST", "/v1/session-token", {**origin, "Cookie": cookie})
    assert minted.status == 200
    session_token = json.loads(minted.body)["session_token"]

    async def session() -> dict:
        async with RealtimeClient(f"{server.ws}?session_token={session_token}", token="") as client:
            return await client.start()

    assert asyncio.run(session())["type"] == "session.created"


def test_metrics_need_the_token_and_probes_do_not(server):
    assert request(server, "GET", "/metrics").status == 401
    metrics = request(server, "GET", "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert metrics.status == 200 and b"vp_" in metrics.body
    assert request(server, "GET", "/health").status == 200
    assert request(server, "GET", "/ready").status == 200


def test_the_server_header_names_no_versions(server):
    for path in ("/health", "/ready", "/metrics", "/", "/nowhere"):
        header = request(server, "GET", path).headers["Server"]
        assert header == "voice-pipeline", (path, header)


def test_an_unmasked_client_frame_closes_the_socket(server):
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101")
        payload = b'{"type":"session.start"}'
        writer.write(bytes([0x81, len(payload)]) + payload)  # a text frame without the mask bit
        received = await asyncio.wait_for(reader.read(), 10)  # up to the server's close of the connection
        writer.close()
        return received

    assert b"\x88\x10\x03\xeaunmasked frame" in asyncio.run(exchange())  # Close 1002, then end of stream


def test_refuses_to_start_beyond_loopback_without_a_token(tmp_path):
    environ = {key: value for key, value in os.environ.items() if key not in SECURITY_ENV}
    process = subprocess.run(
        [VOICE_PIPELINE, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env={**environ, **TEST_SERVER_ENV}, cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = process.stdout + process.stderr
    assert process.returncode != 0, output
    assert "VP_SERVER_AUTH_TOKEN" in output and "VP_SERVER_INSECURE_NO_AUTH" in output
    assert "loading models" not in output and "ready on" not in output
