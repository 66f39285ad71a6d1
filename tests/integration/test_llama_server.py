"""`llm.serving = "server"`: one real llama.cpp `llama-server` (built by scripts/build-llama-server.sh)
with parallel slots. Two long replies are generated at the same time, not one after the other;
every slot holds the system prompt after the warm-up; the server builds the very prompt the
in-process engine builds; a killed server is started again (and warmed) and the next reply completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from voice_pipeline.app.settings import LlmSettings
from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.llama_server import MODEL_ALIAS, ModelServers, SlotsLlm
from voice_pipeline.engines.llama_server_cmd import ENV_BIN
from voice_pipeline.engines.openai_compat import OpenAICompatLLM
from voice_pipeline.engines.registry import smollm2_gguf, system_prompt
from voice_pipeline.errors import EngineError

from .conftest import REPO

pytestmark = pytest.mark.integration
SLOTS = 2
NICE = 5  # llm.server_nice


def _binary() -> str:
    """$LLAMA_SERVER_BIN, or the cached build (./dev setup --test makes it; built here if missing)."""
    if os.environ.get(ENV_BIN):
        return os.environ[ENV_BIN]
    done = subprocess.run([str(REPO / "scripts" / "build-llama-server.sh")], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def servers():
    llm = LlmSettings(serving="server", server_slots=SLOTS, n_threads=2, server_bin=_binary(), server_nice=NICE)
    running = ModelServers(llm, 1, system_prompt=system_prompt(""), kind="server")
    running.start()
    yield running
    running.stop()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _root(servers: ModelServers) -> str:
    return servers.urls[0].removesuffix("/v1")


def _engine(servers: ModelServers) -> SlotsLlm:
    return SlotsLlm(servers.urls, MODEL_ALIAS, max_tokens=24, temperature=0.3, warm_slots=SLOTS)


async def test_two_long_replies_are_generated_at_the_same_time(servers):
    client = OpenAICompatLLM(servers.urls[0], MODEL_ALIAS, max_tokens=40)
    events: list[str] = []  # which reply each streamed token belonged to, in arrival order

    async def reply(name: str, question: str) -> None:
        body = client.request_body([{"role": "user", "content": question}], 40, ignore_eos=True)
        async for chunk in client.stream_chunks(body):
            if chunk["choices"] and (chunk["choices"][0].get("delta") or {}).get("content"):
                events.append(name)

    try:
        await asyncio.gather(reply("a", "Tell me a long story about a dragon."),
                             reply("b", "Explain how rain forms, step by step."))
    finally:
        await client.aclose()
    assert events.count("a") >= 20 and events.count("b") >= 20, events
    first_b, last_a = events.index("b"), len(events) - 1 - events[::-1].index("a")
    first_a, last_b = events.index("a"), len(events) - 1 - events[::-1].index("b")
    # One reply at a time (llama_cpp.server) would give a...ab...b: here each starts before the other ends.
    assert first_b < last_a and first_a < last_b, "".join(events)


async def test_warm_up_leaves_the_system_prompt_in_every_slot(servers):
    engine = _engine(servers)
    try:
        await engine.warm_up(system_prompt(""))
    finally:
        await engine.aclose()
    with urllib.request.urlopen(_root(servers) + "/slots", timeout=10) as response:
        slots = json.load(response)
    assert len(slots) == SLOTS
    assert all(slot.get("n_prompt_tokens", 0) > 0 for slot in slots), slots
    answer = _post(servers.urls[0] + "/chat/completions", {"model": MODEL_ALIAS, "max_tokens": 2, "messages": [
        {"role": "system", "content": system_prompt("")}, {"role": "user", "content": "What time is it?"}]})
    assert 0 < answer["timings"]["cache_n"], "the first turn reuses the cached system prompt"
    assert answer["timings"]["prompt_n"] < answer["timings"]["cache_n"], "only what follows it is evaluated"


def test_the_server_runs_at_the_configured_nice_value(servers):
    fields = open(f"/proc/{servers.pids[0]}/stat").read().rsplit(")", 1)[1].split()
    assert int(fields[16]) - os.getpriority(os.PRIO_PROCESS, 0) == NICE  # field 19 of stat: its nice value


def test_the_server_builds_the_prompt_the_in_process_engine_builds(servers):
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = llama_cpp.Llama(model_path=smollm2_gguf(), vocab_only=True, verbose=False)
    ours = Jinja2ChatFormatter(  # what llama_cpp.Llama uses for this GGUF (its "chat_template.default")
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=vocab._model.token_get_text(vocab.token_eos()),
        bos_token=vocab._model.token_get_text(vocab.token_bos()))
    messages = [{"role": "system", "content": system_prompt("")}, {"role": "user", "content": "Hi there."},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Tell me a joke."}]
    our_prompt = ours(messages=messages).prompt
    their_prompt = _post(_root(servers) + "/apply-template", {"messages": messages})["prompt"]
    assert their_prompt == our_prompt
    their_tokens = _post(_root(servers) + "/tokenize", {"content": their_prompt, "parse_special": True})["tokens"]
    assert their_tokens == vocab.tokenize(our_prompt.encode(), add_bos=False, special=True)


async def test_a_killed_server_is_started_again_warmed_and_the_next_reply_completes(servers):
    engine, client = _engine(servers), OpenAICompatLLM(servers.urls[0], MODEL_ALIAS)
    messages = [ChatMessage("system", system_prompt("")), ChatMessage("user", "Tell me about the moon.")]
    pid, restarts = servers.pids[0], servers.restarts
    long_reply = client.request_body([{"role": "user", "content": "Tell me a long story."}], 400, ignore_eos=True)
    try:
        with pytest.raises(EngineError):
            async for _ in client.stream_chunks(long_reply):
                os.kill(pid, signal.SIGKILL)  # mid-reply, after its first token
        deadline = time.monotonic() + 120
        while not (servers.restarts > restarts and servers.pids and servers.pids[0] != pid and _slots_warm(servers)):
            assert time.monotonic() < deadline, "llama-server not started again and warmed"
            await asyncio.sleep(0.2)
        reply = [text async for text in engine.stream(messages)]
        assert "".join(reply).strip(), "the next reply completes"
    finally:
        await asyncio.gather(engine.aclose(), client.aclose())


def _slots_warm(servers: ModelServers) -> bool:
    try:
        with urllib.request.urlopen(_root(servers) + "/slots", timeout=2) as response:
            return all(slot.get("n_prompt_tokens", 0) > 0 for slot in json.load(response))
    except OSError:
        return False


def test_the_llm_probe_reports_each_level_of_replies_at_once(servers, tmp_path):
    """scripts/llm_slots_bench.py (the LLM alone under concurrency) against the running server."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "VP_LLM_SERVING": "url", "VP_LLM_URL": servers.urls[0], "VP_LLM_MAX_TOKENS": "24"}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "llm_slots_bench.py"), "--levels", "1,2",
                           "--rounds", "1", "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    levels = json.loads(out.read_text())["levels"]
    assert [(level["sessions"], level["replies"]) for level in levels] == [(1, 1), (2, 2)]
    for level in levels:
        assert level["tokens"] >= level["replies"] and level["tokens_per_s"] > 0
        assert level["first_token_ms"]["p50"] is not None and level["token_gap_ms"]["p50"] is not None
        assert set(level["token_20_ms"]) == {"p50", "p95", "n"} and level["client_cpu_ms_per_reply"] >= 0
    assert "2 at once: first token p50" in done.stdout


def test_the_llama_server_variants_script_compares_settings(tmp_path):
    """scripts/llm_server_variants.sh: each variant's server is started, probed and reported."""
    env = {**os.environ, "OUT": str(tmp_path), "LLAMA_SERVER_BIN": _binary(), "PYTHON": sys.executable,
           "SLOTS": "2", "LEVELS": "2", "ROUNDS": "1", "VARIANTS": "base kvu_cram0", "VP_LLM_N_THREADS": "2",
           "VP_LLM_MAX_TOKENS": "16"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "llm_server_variants.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "variants.txt").read_text()
    assert "== base:" in report and "== kvu_cram0: -kvu --cache-ram 0" in report
    assert report.count("2 at once: first token p50") == 2 and report.count("server CPU s per thread") == 2
