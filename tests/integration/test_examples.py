"""Each example under examples/ runs as its own process (real models, the real server and
transports) and answers real turns: text turns, and a spoken one for the echo bot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voice_pipeline.audio import read_wav
from voice_pipeline_client.realtime import RealtimeClient

from .conftest import REPO, TEST_SERVER_ENV, RunningServer, free_port

pytestmark = pytest.mark.integration


def start_example(name: str, tmp_path: Path) -> RunningServer:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    environ = {**os.environ, **TEST_SERVER_ENV, "VP_TELEPHONY_SIP_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, str(REPO / "examples" / f"{name}.py"), "--port", str(port)],
                               env=environ, cwd=REPO, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    server = RunningServer(port, process, log_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text()}")
        try:
            if server.get("/ready")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"{name} not ready in time:\n{log_path.read_text()}")


def stop_example(server: RunningServer) -> str:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
    return server.log_path.read_text()


async def text_turn(url: str, text: str) -> tuple[dict, dict, int]:
    async with RealtimeClient(url) as client:
        await client.start()
        await client.send({"type": "conversation.item.create",
                           "item": {"role": "user", "content": [{"type": "input_text", "text": text}]}})
        metrics = await client.wait_for("turn.metrics", 180)
        return client.received.of_type("response.done")[0], metrics, len(client.received.audio)


async def test_echo_bot_says_back_what_it_heard(tmp_path, piper_say):
    server = start_example("echo_bot", tmp_path)
    try:
        done, metrics, audio_frames = await text_turn(server.ws, "the weather is lovely today")
        assert done["status"] == "completed" and done["text"] == "You said: the weather is lovely today"
        assert metrics["answered_by"] == "small" and audio_frames > 0
        audio, rate_hz = read_wav(piper_say("The weather is lovely today."))
        async with RealtimeClient(server.ws) as client:
            await client.start()
            await client.stream(audio, rate_hz)
            await client.wait_for("turn.metrics", 180)
            transcript = client.received.of_type("conversation.item.input_audio_transcription.completed")[0]
            spoken = client.received.of_type("response.done")[0]
        assert "weather" in transcript["transcript"].lower()
        assert spoken["text"] == "You said: " + transcript["transcript"]
    finally:
        stop_example(server)


async def test_a_python_tool_answers_on_the_instant_route_next_to_the_built_in_ones(tmp_path):
    server = start_example("order_tool", tmp_path)
    try:
        done, metrics, audio_frames = await text_turn(server.ws, "Where is my order 427?")
        assert done["text"] == "Order 427 left our warehouse this morning and arrives tomorrow."
        assert (metrics["route"], metrics["route_reason"]) == ("instant", "tool") and audio_frames > 0
        done, metrics, _ = await text_turn(server.ws, "What is seventeen times twenty three?")
        assert done["text"] == "Seventeen times twenty-three is three hundred ninety-one."
        done, metrics, _ = await text_turn(server.ws, "Tell me about your shop.")
        assert metrics["route"] in ("small", "large") and done["status"] == "completed"
    finally:
        log = stop_example(server)
    assert log.count("route=instant reason=tool") == 2  # the example's metrics hook saw each turn


async def test_a_custom_reply_handler_answers_with_its_own_model(tmp_path):
    server = start_example("custom_reply", tmp_path)
    try:
        done, metrics, audio_frames = await text_turn(server.ws, "Tell me about the sea.")
        assert done["status"] == "completed" and done["text"].strip()
        assert metrics["answered_by"] == "small" and metrics["llm_tokens"] > 0 and audio_frames > 0
    finally:
        stop_example(server)
