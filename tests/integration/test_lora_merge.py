"""The voice LoRA merged into SmolLM2 by the real llama-export-lora (built beside llama-server by
scripts/build-llama-server.sh) is the same model as SmolLM2 with the adapter applied at run time:
for voice questions both give the same next token with close probabilities, where SmolLM2 without
the adapter does not."""

from __future__ import annotations

import numpy as np
import pytest

from voice_pipeline.engines.lora_merge import export_tool, merge
from voice_pipeline.engines.registry import VOICE_LORA_PATH, smollm2_gguf, system_prompt

from .test_llama_server import _binary

pytestmark = pytest.mark.integration
QUESTIONS = ["What is the capital of France?", "How far away is the moon?", "Tell me a joke about cats.",
             "Why is the sky blue?", "Can you recommend a good book?", "How do I boil an egg?"]


def _next_token_probs(model: str, lora: str = "") -> list[np.ndarray]:
    """Each question's next-token distribution after the chat prompt (the reply's first token)."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, lora_path=lora or None, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    try:
        out = []
        for question in QUESTIONS:
            prompt = (f"<|im_start|>system\n{system_prompt('')}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                      "<|im_start|>assistant\n")
            llm.reset()
            llm.eval(llm.tokenize(prompt.encode(), special=True))
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            probs = np.exp(logits - logits.max())
            out.append(probs / probs.sum())
        return out
    finally:
        llm.close()


def test_the_merged_model_answers_as_the_model_with_its_adapter(tmp_path):
    tool = export_tool(_binary())
    assert tool, "scripts/build-llama-server.sh builds llama-export-lora beside llama-server"
    merged = merge(smollm2_gguf(), str(VOICE_LORA_PATH), tool, threads=2, cache_root=tmp_path)
    assert merge(smollm2_gguf(), str(VOICE_LORA_PATH), tool, cache_root=tmp_path) == merged, "cached"
    with_adapter = _next_token_probs(smollm2_gguf(), str(VOICE_LORA_PATH))
    merged_probs = _next_token_probs(merged)
    base = _next_token_probs(smollm2_gguf())
    for question, a, m in zip(QUESTIONS, with_adapter, merged_probs):
        assert int(a.argmax()) == int(m.argmax()), question
        assert 0.5 * np.abs(a - m).sum() < 0.1, f"{question}: total variation {0.5 * np.abs(a - m).sum():.3f}"
    # The comparison can tell the adapter's presence: without it the distributions are far apart
    apart = [0.5 * np.abs(a - b).sum() for a, b in zip(with_adapter, base)]
    assert max(apart) > 0.3, apart
