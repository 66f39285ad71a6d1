"""/v1/realtime over a real loopback socket with fake engines: sockets that never send
session.start are closed after `server.start_timeout_s`, so they cannot hold the session slots."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from voice_pipeline.app.server import PipelineServer

from .fakes import fake_engines, make_settings
from .loopback import serve_on_loopback


async def _serve(server: PipelineServer) -> tuple[web.AppRunner, str]:
    runner, port = await serve_on_loopback(server.app())
    return runner, f"ws://127.0.0.1:{port}/v1/realtime"


async def _next_event(ws: aiohttp.ClientWebSocketResponse) -> dict:
    """The next JSON event, skipping reply audio (binary frames)."""
    while True:
        message = await asyncio.wait_for(ws.receive(), 5)
        if message.type == aiohttp.WSMsgType.TEXT:
            return message.json()


async def test_sockets_without_session_start_time_out_and_free_their_slots():
    settings = make_settings()
    settings.server.max_sessions = 2
    settings.server.start_timeout_s = 0.3
    server = PipelineServer(settings, fake_engines())
    runner, url = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http:
            idle = [await http.ws_connect(url) for _ in range(2)]
            refused = await http.ws_connect(url)  # both slots held
            assert (await refused.receive_json())["error"]["code"] == "server_busy"
            for ws in idle:
                error = await asyncio.wait_for(ws.receive_json(), 5)
                assert error["error"]["code"] == "session_start_timeout"
                await asyncio.wait_for(ws.receive(), 5)
                assert ws.close_code == 1008
            for _ in range(50):
                if not server.sessions:
                    break
                await asyncio.sleep(0.02)
            assert not server.sessions
            async with http.ws_connect(url) as ws:  # a slot is free again, and a started session stays
                await ws.send_json({"type": "session.start"})
                assert (await ws.receive_json())["type"] == "session.created"
                await asyncio.sleep(0.5)
                assert not ws.closed and len(server.sessions) == 1
    finally:
        await runner.cleanup()


async def test_draining_refuses_new_sessions_and_waits_for_the_reply_in_progress():
    from .fakes import FakeLlm

    llm = FakeLlm(hold_after=2)  # the reply waits mid-way until released
    server = PipelineServer(make_settings(), fake_engines(llm=llm))
    runner, url = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json({"type": "session.start"})
            await ws.send_json({"type": "conversation.item.create",
                                "item": {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
            while (await _next_event(ws))["type"] != "response.created":
                pass
            drain = asyncio.create_task(server.host.drain(timeout_s=5))
            await asyncio.sleep(0.2)
            assert not drain.done(), "a reply is in progress: the drain waits for it"
            async with http.get(url.replace("ws://", "http://").replace("/v1/realtime", "/ready")) as ready:
                assert ready.status == 503 and (await ready.json())["draining"]
            refused = await http.ws_connect(url)
            assert (await refused.receive_json())["error"]["code"] == "server_draining"
            llm.release.set()  # the reply goes on to its end, on the socket that was open before the stop
            while (event := await _next_event(ws))["type"] != "response.done":
                pass
            assert event["status"] == "completed"
            assert await asyncio.wait_for(drain, 5) == 0
    finally:
        await runner.cleanup()


async def test_a_drain_that_runs_out_of_time_says_how_many_were_still_busy():
    from .fakes import FakeLlm

    server = PipelineServer(make_settings(), fake_engines(llm=FakeLlm(hold_after=1)))
    runner, url = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json({"type": "session.start"})
            await ws.send_json({"type": "conversation.item.create",
                                "item": {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
            while (await _next_event(ws))["type"] != "response.created":
                pass
            assert await server.host.drain(timeout_s=0.2) == 1
    finally:
        await runner.cleanup()
