"""The LLM alone under concurrency: N replies at once through the client the workers use.

Usage (repository root, project environment; the LLM settings come from VP_LLM_*, as for `serve`):

    VP_LLM_SERVING=server VP_LLM_SERVER_SLOTS=64 .venv/bin/python scripts/llm_slots_bench.py \
        --levels 1,16,64 --rounds 3 --out llm_slots.json

It starts the configured LLM (for `server`, one llama-server child with its slots), warms every
slot with the system prompt as `serve` does, then at each level N sends N different corpus
questions at once, `--rounds` times, each a full reply (llm.max_tokens). Per reply: the time to its
first token, to its 20th token (the product's target: the first clause is spoken from those), and
the gaps between tokens; per level the medians and p95s, the tokens per second of all replies
together and the CPU seconds this client process spent per reply (one event loop reads every
stream, as one pipeline worker does). Without the pipeline around it, this says whether the LLM
server or the workers set a many-session figure (issue "Serve many conversations").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_pipeline.app.settings import Settings  # noqa: E402
from voice_pipeline.bench.corpus import Corpus  # noqa: E402
from voice_pipeline.engines.base import ChatMessage  # noqa: E402
from voice_pipeline.engines.llama_server import SlotsLlm  # noqa: E402
from voice_pipeline.engines.registry import system_prompt  # noqa: E402

TARGET_TOKENS = 20


def pct(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile, as the bench reports them."""
    if not values:
        return None
    values = sorted(values)
    pos = q * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (pos - low), 1)


async def one_reply(llm: SlotsLlm, prompt: str, question: str) -> dict:
    messages = [ChatMessage("system", prompt), ChatMessage("user", question)]
    started = time.perf_counter()
    stamps: list[float] = []
    async for _text in llm.stream(messages):
        stamps.append((time.perf_counter() - started) * 1000)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"first_ms": stamps[0] if stamps else None,
            "twentieth_ms": stamps[TARGET_TOKENS - 1] if len(stamps) >= TARGET_TOKENS else None,
            "tokens": len(stamps), "total_ms": stamps[-1] if stamps else None, "gaps_ms": gaps}


async def level(llm: SlotsLlm, prompt: str, questions: list[str], sessions: int, rounds: int) -> dict:
    replies, walls, cpu = [], [], 0.0
    for round_index in range(rounds):
        asked = [questions[(round_index * sessions + i) % len(questions)] for i in range(sessions)]
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        replies += await asyncio.gather(*(one_reply(llm, prompt, q) for q in asked))
        walls.append(time.perf_counter() - wall_before)
        cpu += time.process_time() - cpu_before
    firsts = [r["first_ms"] for r in replies if r["first_ms"] is not None]
    twentieths = [r["twentieth_ms"] for r in replies if r["twentieth_ms"] is not None]
    gaps = [g for r in replies for g in r["gaps_ms"]]
    tokens = sum(r["tokens"] for r in replies)
    return {"sessions": sessions, "replies": len(replies), "tokens": tokens,
            "first_token_ms": {"p50": pct(firsts, 0.5), "p95": pct(firsts, 0.95)},
            "token_20_ms": {"p50": pct(twentieths, 0.5), "p95": pct(twentieths, 0.95), "n": len(twentieths)},
            "token_gap_ms": {"p50": pct(gaps, 0.5), "p95": pct(gaps, 0.95)},
            "tokens_per_s": round(tokens / sum(walls), 1),
            "client_cpu_ms_per_reply": round(cpu * 1000 / len(replies), 1)}


async def main_async(args: argparse.Namespace) -> list[dict]:
    llm_settings = Settings.load(args.config).llm
    prompt = system_prompt(llm_settings.system_prompt_file)
    llm = await asyncio.to_thread(SlotsLlm.from_settings, llm_settings)
    try:
        await llm.warm_up(prompt)
        questions = [item.text for item in Corpus.load().items] if args.corpus else []
        questions = questions or ["What is the capital of France?"]
        results = []
        for sessions in args.levels:
            result = await level(llm, prompt, questions, sessions, args.rounds)
            results.append(result)
            print(f"{sessions:4d} at once: first token p50 {result['first_token_ms']['p50']} "
                  f"p95 {result['first_token_ms']['p95']} ms; token {TARGET_TOKENS} p50 "
                  f"{result['token_20_ms']['p50']} p95 {result['token_20_ms']['p95']} ms; gap p50 "
                  f"{result['token_gap_ms']['p50']} p95 {result['token_gap_ms']['p95']} ms; "
                  f"{result['tokens_per_s']} tokens/s; client CPU {result['client_cpu_ms_per_reply']} ms/reply",
                  flush=True)
        return results
    finally:
        await llm.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,8,16,32,64", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", help="TOML settings file")
    parser.add_argument("--no-corpus", dest="corpus", action="store_false", help="one fixed question")
    parser.add_argument("--out", help="write the levels as JSON here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    if args.out:
        Path(args.out).write_text(json.dumps({"levels": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
