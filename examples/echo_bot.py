"""Echo bot: the smallest assistant. Whatever you say (or type) it says back.

    python examples/echo_bot.py --port 8765     # then open http://127.0.0.1:8765/ and talk
"""

import argparse

from voice_pipeline.assistant import Assistant

assistant = Assistant(builtin=False)  # no built-in tools: every turn is echoed


@assistant.reply
async def echo(messages):
    yield "You said: " + messages[-1].content


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    assistant.serve(port=parser.parse_args().port)
