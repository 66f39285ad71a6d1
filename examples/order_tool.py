"""A tool: a Python function the assistant calls when the user asks for it, next to the built-in
ones (arithmetic, units, dates, timers). Other questions go to the local model.

    python examples/order_tool.py --port 8765
    say: "where is my order 4 2 7"   or   "what is seventeen times twenty three"
"""

import argparse
from typing import Annotated

from voice_pipeline.assistant import Assistant

ORDERS = {427: "left our warehouse this morning and arrives tomorrow", 1001: "is being packed"}

assistant = Assistant(instructions="You are the friendly voice of a small online shop. Answer in one sentence.")


@assistant.tool(when=r"(?:where is|track|what about) my order(?: number)? (?P<order_id>\d+)")
def order_status(order_id: Annotated[int, "the order number"]) -> str:
    """Where a customer's order is."""
    status = ORDERS.get(order_id)
    return f"Order {order_id} {status}." if status else f"I can't find an order {order_id}."


@assistant.on("metrics")
def log_turn(event):
    print(f"turn {event.turn_id}: route={event.data.get('route')} reason={event.data.get('route_reason')}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    assistant.serve(port=parser.parse_args().port)
