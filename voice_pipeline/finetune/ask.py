"""`voice-pipeline ask`: one prompt through the server's LLM engine and settings, with its timings."""

from __future__ import annotations

import asyncio
import dataclasses

from voice_pipeline.app.settings import Settings


def ask(text: str, model: str = "tuned", config: str | None = None) -> dict:
    """{"reply", "ttft_ms", "t20_ms", "tokens"}; `model` picks the base GGUF or base + the voice adapter."""
    from voice_pipeline.engines.llama_cpp import LlamaCppLlm
    from voice_pipeline.engines.registry import system_prompt
    from voice_pipeline.finetune.evaluate import generate

    llm_settings = Settings.load(config).llm
    # The variant names the adapter; an explicit lora_path in the settings applies to "tuned" only.
    lora_path = llm_settings.lora_path if model == "tuned" else ""
    llm = LlamaCppLlm.from_settings(dataclasses.replace(llm_settings, variant=model, lora_path=lora_path))
    messages = [
        {"role": "system", "content": system_prompt(llm_settings.system_prompt_file)},
        {"role": "user", "content": text},
    ]

    async def answer() -> dict:
        await llm.warm_up(messages[0]["content"])  # as the server does: the system prompt's state is reused
        reply = await generate(llm, messages, llm_settings.max_tokens)
        return {"reply": reply.text, "ttft_ms": round(reply.ttft_ms, 1), "t20_ms": round(reply.t20_ms, 1),
                "tokens": reply.tokens}

    return asyncio.run(answer())
