"""The local LLM through llama.cpp, streamed token by token from a worker thread.

llama-cpp-python keeps the tokens it last evaluated and, on the next call, evaluates only what
follows the longest common prefix. Every prompt starts with the same system prompt, so after
`warm_up` its KV state is reused by every turn and the first token never pays for it again.

One llama.cpp context generates one reply at a time; `instances` contexts (each warmed) let that
many sessions generate at once instead of waiting for each other's whole replies. The contexts
live in a `ThreadOwnedPool`: a context goes back to the pool only from the worker thread that
used it, after llama.cpp has returned, however the reply's task was cancelled.
"""

from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator, Sequence

from voice_pipeline.engines.base import ChatMessage
from voice_pipeline.engines.registry import VOICE_LORA_PATH, smollm2_gguf
from voice_pipeline.errors import ConfigError, EngineError
from voice_pipeline.threads import ThreadOwnedPool, can_wait


def voice_lora_path(variant: str) -> str:
    """The adapter for a model variant: none for "base", the project's voice LoRA for "tuned"."""
    if variant == "base":
        return ""
    if variant == "tuned":
        return str(VOICE_LORA_PATH)
    raise ConfigError(f"llm.variant must be 'base' or 'tuned', not {variant!r}")


class LlamaCppLlm:
    def __init__(
        self,
        model_path: str = "",
        lora_path: str = "",
        n_ctx: int = 2048,
        n_threads: int = 0,
        n_gpu_layers: int = -1,
        max_tokens: int = 96,
        temperature: float = 0.3,
        instances: int = 1,
        later_nice: int = 0,
    ) -> None:
        """`later_nice` > 0: a reply's tokens are generated in threads at that lower CPU priority
        while nobody waits on them (`can_wait`: its first piece is written and its audio is well
        ahead of its playback): another session's first piece, whose listener is waiting, goes first."""
        import llama_cpp

        model_path = model_path or smollm2_gguf()
        gpu = llama_cpp.llama_supports_gpu_offload()
        self.name = "llama.cpp:" + os.path.basename(model_path) + (f"+{os.path.basename(lora_path)}" if lora_path else "")
        self.max_tokens, self.temperature = max_tokens, temperature
        contexts = [
            llama_cpp.Llama(
                model_path=model_path,
                lora_path=lora_path or None,
                n_ctx=n_ctx,
                n_threads=n_threads or (os.cpu_count() or 1),
                # Prompt evaluation uses the same threads, not every core: on a small CPU the other
                # engines need theirs.
                n_threads_batch=n_threads or (os.cpu_count() or 1),
                n_gpu_layers=n_gpu_layers if gpu else 0,
                verbose=False,
            )
            for _ in range(max(1, instances))
        ]
        self._contexts = ThreadOwnedPool(contexts, thread_name_prefix="llm", later_nice=later_nice)

    @classmethod
    def from_settings(cls, settings) -> "LlamaCppLlm":
        return cls(
            model_path=settings.model_path,
            lora_path=settings.lora_path or voice_lora_path(settings.variant),
            n_ctx=settings.n_ctx,
            n_threads=settings.threads_per_instance(),
            n_gpu_layers=settings.n_gpu_layers,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            instances=settings.instances,
            later_nice=settings.later_nice,
        )

    def _completion(self, llm, messages: Sequence[ChatMessage], max_tokens: int):
        return llm.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            stream=True,
            max_tokens=max_tokens,
            temperature=self.temperature,
        )

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        chunks = self._contexts.stream(lambda llm: self._completion(llm, messages, max_tokens or self.max_tokens),
                                       can_wait=can_wait.get())
        try:
            async for chunk in chunks:
                content = chunk["choices"][0]["delta"].get("content")
                if content:
                    yield content
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError("llm", f"{type(exc).__name__}: {exc}") from exc
        finally:
            await chunks.aclose()

    async def warm_up(self, system_prompt: str) -> None:
        """Evaluate the system prompt in every context, so its KV state is cached everywhere."""
        messages = [ChatMessage("system", system_prompt), ChatMessage("user", "Hello.")]

        async def one() -> None:
            async for _ in self.stream(messages, max_tokens=2):
                pass

        await asyncio.gather(*(one() for _ in self._contexts.resources))
