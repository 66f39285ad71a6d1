"""The local LLM through llama.cpp, streamed token by token from a worker thread.

llama-cpp-python keeps the tokens it last evaluated and, on the next call, evaluates only what
follows the longest common prefix. Every prompt starts with the same system prompt, so after
`warm_up` its KV state is reused by every turn and the first token never pays for it again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Sequence

from ..errors import EngineError
from ..threads import iterate_in_thread
from .base import ChatMessage
from .registry import smollm2_gguf


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
    ) -> None:
        import llama_cpp

        model_path = model_path or smollm2_gguf()
        gpu = llama_cpp.llama_supports_gpu_offload()
        self.name = "llama.cpp:" + os.path.basename(model_path) + (f"+{os.path.basename(lora_path)}" if lora_path else "")
        self.max_tokens, self.temperature = max_tokens, temperature
        self._llm = llama_cpp.Llama(
            model_path=model_path,
            lora_path=lora_path or None,
            n_ctx=n_ctx,
            n_threads=n_threads or (os.cpu_count() or 1),
            n_gpu_layers=n_gpu_layers if gpu else 0,
            verbose=False,
        )
        # One model state, one thread: requests from several sessions queue here in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm")

    @classmethod
    def from_settings(cls, settings) -> "LlamaCppLlm":
        return cls(
            model_path=settings.model_path,
            lora_path=settings.lora_path,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        )

    def _completion(self, messages: Sequence[ChatMessage], max_tokens: int):
        return self._llm.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            stream=True,
            max_tokens=max_tokens,
            temperature=self.temperature,
        )

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]:
        chunks = iterate_in_thread(lambda: self._completion(messages, max_tokens or self.max_tokens), self._executor)
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
        messages = [ChatMessage("system", system_prompt), ChatMessage("user", "Hello.")]
        async for _ in self.stream(messages, max_tokens=2):
            pass
