"""`voice-pipeline eval llm`: the base model against the tuned adapter on the held-out prompts and
the factual set, through the same llama.cpp engine the server uses, with greedy decoding."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from voice_pipeline.finetune import data
from voice_pipeline.finetune import measures
from voice_pipeline.finetune.export import ADAPTER_PATH

EVAL_PATH = data.VOICE_LORA_DIR / "EVAL.json"

FAST_HELDOUT_EVERY = 5  # the fast subset: held-out prompts 0, 5, 10, ... and factual 0, 4, 8, ...
FAST_FACTUAL_EVERY = 4
MAX_TOKENS = 96  # the server's default reply budget
FAST_MAX_TOKENS = 48
THREADS = 2


@dataclass(frozen=True)
class Reply:
    text: str
    tokens: int
    finished: bool  # ended on its own, not cut by max_tokens
    first_piece_within_20: bool
    ttft_ms: float
    t20_ms: float  # time to the 20th token (or to the last one, for shorter replies)


def make_llm(model: str, max_tokens: int = MAX_TOKENS, lora_path: str | Path = ADAPTER_PATH):
    from voice_pipeline.engines.llama_cpp import LlamaCppLlm

    return LlamaCppLlm(
        lora_path=str(lora_path) if model == "tuned" else "", n_threads=THREADS,
        max_tokens=max_tokens, temperature=0.0, n_gpu_layers=0,
    )


async def generate(llm, messages: Sequence[dict], max_tokens: int) -> Reply:
    from voice_pipeline.engines.base import ChatMessage

    chat = [ChatMessage(m["role"], m["content"]) for m in messages]
    pieces: list[str] = []
    stamps_ms: list[float] = []
    started = time.perf_counter()
    async for piece in llm.stream(chat, max_tokens=max_tokens):
        pieces.append(piece)
        stamps_ms.append((time.perf_counter() - started) * 1000)
    finished = len(pieces) < max_tokens
    return Reply(
        text="".join(pieces).strip(), tokens=len(pieces), finished=finished,
        first_piece_within_20=measures.first_piece_within(pieces, finished),
        ttft_ms=stamps_ms[0] if stamps_ms else float("nan"),
        t20_ms=stamps_ms[min(measures.FIRST_PIECE_TOKENS, len(stamps_ms)) - 1] if stamps_ms else float("nan"),
    )


def prompts(fast: bool, factual_set: str = "factual") -> tuple[list[list[dict]], list[dict]]:
    """(held-out prompts: each conversation without its last reply, factual items)."""
    heldout = [list(c.messages[:-1]) for c in data.load("heldout")]
    factual = data.load_factual(factual_set)
    if fast:
        heldout, factual = heldout[::FAST_HELDOUT_EVERY], factual[::FAST_FACTUAL_EVERY]
    return heldout, factual


async def evaluate_model(model: str, fast: bool, lora_path: str | Path = ADAPTER_PATH,
                         factual_set: str = "factual") -> dict:
    max_tokens = FAST_MAX_TOKENS if fast else MAX_TOKENS
    llm = make_llm(model, max_tokens, lora_path)
    system = data.system_prompt()
    await llm.warm_up(system)
    heldout, factual = prompts(fast, factual_set)
    voice = [await generate(llm, messages, max_tokens) for messages in heldout]
    answers = []
    for item in factual:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": item["question"]}]
        answers.append(await generate(llm, messages, max_tokens))
    return summarize(voice, answers, factual)


def summarize(voice: list[Reply], answers: list[Reply], factual: list[dict]) -> dict:
    within = sum(r.first_piece_within_20 for r in voice)
    formatted = sum(bool(measures.formatting(r.text)) for r in voice)
    correct = sum(measures.is_correct(r.text, item["accept"]) for r, item in zip(answers, factual))
    timed = voice + answers
    return {
        "heldout_prompts": len(voice),
        "first_piece_within_20_tokens": within,
        "first_piece_within_20_tokens_share": round(within / len(voice), 3),
        "formatted_replies": formatted,
        "formatted_share": round(formatted / len(voice), 3),
        "mean_words_per_reply": round(statistics.fmean(measures.word_count(r.text) for r in voice), 1),
        "mean_tokens_per_reply": round(statistics.fmean(r.tokens for r in voice), 1),
        "cut_by_max_tokens": sum(not r.finished for r in voice),
        "factual_questions": len(factual),
        "factual_correct": correct,
        "factual_accuracy": round(correct / len(factual), 3),
        "median_ttft_ms": round(statistics.median(r.ttft_ms for r in timed), 1),
        "median_t20_ms": round(statistics.median(r.t20_ms for r in timed), 1),
        "samples": [r.text for r in voice[:5]],
    }


def run(fast: bool, lora_path: str | Path = ADAPTER_PATH, factual_set: str = "factual") -> dict:
    """Base against tuned. `factual_set`: "factual" (the gate) or "factual_dev" (for choosing
    between training runs without looking at the gate)."""
    results = {model: asyncio.run(evaluate_model(model, fast, lora_path, factual_set)) for model in ("base", "tuned")}
    return {
        "mode": "fast" if fast else "full",
        "settings": {
            "decoding": "greedy (temperature 0)", "threads": THREADS,
            "max_tokens": FAST_MAX_TOKENS if fast else MAX_TOKENS,
            "heldout_subset": f"every {FAST_HELDOUT_EVERY}th" if fast else "all",
            "factual_subset": f"every {FAST_FACTUAL_EVERY}th" if fast else "all",
            "adapter": Path(lora_path).name,
            "factual_set": factual_set,
        },
        **results,
    }


def store(results: dict, path: Path = EVAL_PATH) -> None:
    """Keep the latest full and fast results side by side in EVAL.json."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored[results["mode"]] = results
    path.write_text(json.dumps(stored, indent=2) + "\n")


def committed(mode: str, path: Path = EVAL_PATH) -> dict:
    return json.loads(path.read_text())[mode]


ROWS = (
    ("first piece within 20 tokens", "first_piece_within_20_tokens_share"),
    ("markdown/list/emoji replies", "formatted_share"),
    ("mean words per reply", "mean_words_per_reply"),
    ("factual accuracy", "factual_accuracy"),
    ("median time to first token, ms", "median_ttft_ms"),
    ("median time to 20th token, ms", "median_t20_ms"),
)


def table(results: dict) -> str:
    lines = [f"{'measure (' + results['mode'] + ')':<34} {'base':>10} {'tuned':>10}"]
    for label, key in ROWS:
        lines.append(f"{label:<34} {results['base'][key]:>10} {results['tuned'][key]:>10}")
    return "\n".join(lines)
