"""The whole pipeline on the real tiny models, through a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import numpy as np
import pytest

from voice_pipeline.audio import read_wav
from voice_pipeline.metrics import MARKS
from voice_pipeline_client.realtime import RealtimeClient

from .conftest import VOICE_PIPELINE

pytestmark = pytest.mark.integration


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def test_spoken_question_gets_a_transcript_a_spoken_reply_and_ordered_metrics(server, piper_say, tmp_path):
    question = piper_say("What is the capital of France?")
    out = tmp_path / "reply.wav"
    result = subprocess.run(
        [VOICE_PIPELINE, "talk", str(question), "--url", server.ws, "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert {"capital", "france"} <= words(reply["transcript"])
    assert reply["reply_text"].strip()
    assert reply["reply_audio_seconds"] > 0.3
    audio, rate = read_wav(out)
    assert rate == 22050 and rms(audio) > 0.01  # a real voice, not silence
    metrics = reply["metrics"]
    assert metrics["voice_to_voice_ms"] is not None and metrics["server_voice_to_voice_ms"] is not None
    marks = metrics["marks_ms"]
    assert set(MARKS) <= set(marks) and "llm_token_20" in marks or reply["metrics"]["llm_tokens"] < 20
    chain = [m for m in MARKS if m != "endpoint"]
    assert [marks[m] for m in chain] == sorted(marks[m] for m in chain)
    assert list(metrics["stages_ms"]) == ["endpointing", "stt", "llm_first_token", "first_piece", "tts", "send"]


def test_a_spoken_turn_s_cpu_is_counted_for_the_stages_that_used_it(server, piper_say):
    from voice_pipeline.bench.procstat import ProcessMeter, thread_cpu_s, thread_name, tree_cpu_s

    question = piper_say("What is the capital of France?")
    meter = ProcessMeter(server.process.pid)
    meter.start()
    result = subprocess.run([VOICE_PIPELINE, "talk", str(question), "--url", server.ws, "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    stages = meter.stop()["cpu_by_stage"]
    assert {"stt", "llm", "tts", "event loop"} <= {stage for stage, cores in stages.items() if cores > 0}, stages
    # whisper's CTranslate2 workers and Piper's onnxruntime pool are named for the stage that loaded them
    names = {thread_name(pid, tid) for pid, tid in thread_cpu_s(tree_cpu_s(server.process.pid))}
    assert {"stt-native_0", "tts-native_0"} <= names, sorted(names)


async def test_barge_in_silences_the_reply_and_nothing_of_it_follows(server, piper_say):
    question, _ = read_wav(piper_say("Tell me a long story about a brave knight and a dragon.", tail_s=0.0))
    interruption, _ = read_wav(piper_say("Stop, wait a moment please.", lead_s=0.0, tail_s=0.0))
    async with RealtimeClient(server.ws) as client:
        await client.start(input_audio_format={"encoding": "pcm16", "sample_rate": 22050})
        done = asyncio.Event()
        await client.stream(question, 22050)
        microphone = asyncio.create_task(client.stream_silence_until(22050, done, 60))
        started = await client.wait_for("output_audio_buffer.started", 60)
        done.set()
        await microphone
        await client.stream(interruption, 22050)
        done2 = asyncio.Event()
        microphone = asyncio.create_task(client.stream_silence_until(22050, done2, 30))
        cleared = await client.wait_for("output_audio_buffer.cleared", 30)
        finished = await client.wait_for("response.done", 30, response_id=started["response_id"])
        done2.set()
        await microphone
        received = client.received
    rid = started["response_id"]
    assert cleared["response_id"] == rid and cleared["reason"] == "barge_in"
    assert finished["status"] == "cancelled"
    assert len(finished["played_text"]) < len(finished["text"]) or not finished["text"]
    order = [event["type"] for _, event in received.events]
    second_speech = [i for i, t in enumerate(order) if t == "input_audio_buffer.speech_started"][1]
    assert second_speech < order.index("output_audio_buffer.cleared")
    cleared_t = received.first_time("output_audio_buffer.cleared")
    next_start = [t for t, e in received.events if e["type"] == "output_audio_buffer.started" and t > cleared_t]
    stale = [t for t, _ in received.audio if t > cleared_t and (not next_start or t < next_start[0])]
    assert stale == []


async def test_bad_input_gets_errors_and_the_session_keeps_working(server):
    async with RealtimeClient(server.ws) as client:
        await client.send_raw(b"\x00\x00" * 160)  # audio before session.start
        await client.wait_for("error")
        await client.start()
        await client.send_raw("{not json")
        await client.send_raw('{"type": "no.such.thing"}')
        await client.send_raw(b"\x00" * 321)  # odd length
        await client.send_raw(b"\x00" * 6402)  # > 100 ms at 16 kHz
        await client.send({"type": "session.update", "session": {"input_audio_format": {"sample_rate": 12345}}})
        await client.send_raw(json.dumps({"type": "conversation.item.create", "pad": "x" * 70000}))
        await client.send({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}})
        done = await client.wait_for("response.done", 60)
        codes = [e["error"]["code"] for e in client.received.of_type("error")]
    assert codes == [
        "session_not_started", "invalid_json", "unknown_event", "invalid_audio_frame",
        "audio_frame_too_large", "unsupported_sample_rate", "text_frame_too_large",
    ]
    assert done["status"] == "completed" and done["text"]


async def test_vanished_client_ends_its_turn_and_the_server_goes_on(server):
    def open_sessions() -> int:
        return json.loads(server.get("/ready")[1])["sessions"]

    for _ in range(300):  # sessions of earlier tests may still be closing
        if open_sessions() == 0:
            break
        await asyncio.sleep(0.1)
    async with RealtimeClient(server.ws) as client:
        await client.start()
        await client.send({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": "Tell me about the moon."}]}})
        await client.wait_for("response.created", 30)
    for _ in range(300):  # the server notices the close and tears the session down
        if open_sessions() == 0:
            break
        await asyncio.sleep(0.1)
    assert open_sessions() == 0
    assert re.search(r"^vp_sessions 0\.0$", server.get("/metrics")[1], re.M)
    async with RealtimeClient(server.ws) as client:
        await client.start()
        await client.send({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_text", "text": "Hi."}]}})
        assert (await client.wait_for("response.done", 60))["status"] == "completed"


async def test_session_limit_turns_extra_clients_away(server):
    clients = [RealtimeClient(server.ws) for _ in range(4)]
    for client in clients:
        await client.__aenter__()
        await client.start()
    try:
        async with RealtimeClient(server.ws) as extra:
            error = await extra.wait_for("error", 10)
        assert error["error"]["code"] == "server_busy"
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)


def test_health_ready_and_prometheus_metrics(server):
    assert server.get("/health")[0] == 200
    status, body = server.get("/ready")
    ready = json.loads(body)
    assert status == 200 and ready["ready"] is True
    assert {"stt_load_ms", "llm_load_ms", "tts_load_ms", "process_to_ready_ms"} <= set(ready["cold_start"])
    metrics = server.get("/metrics")[1]
    for name in ("vp_stage_seconds", "vp_voice_to_voice_seconds", "vp_turns_total", "vp_errors_total", "vp_sessions"):
        assert name in metrics
