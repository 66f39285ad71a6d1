"""The tools' held-out set through a real server, as text turns: how many replies are right with
and without the built-in tools (`python -m voice_pipeline.tools.heldout [--only with|without]`).

The server is the one `voice-pipeline serve` runs, started in this process through the Python API
(voice_pipeline/assistant.py) so the tools can be left out for the comparison; each question gets
a session of its own, so no answer sees another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from voice_pipeline.routing.spoken import MONTHS, ordinal_words
from voice_pipeline.spoken_numbers import say_value
from voice_pipeline.tools.clock import resolve_day

QUESTIONS = Path(__file__).resolve().parents[2] / "bench" / "tools-heldout-v1.json"


@dataclass
class Outcome:
    id: str
    kind: str
    right: bool
    route: str
    reason: str
    text: str


def accepted(item: dict[str, Any], today: datetime) -> list[str]:
    """The answer patterns of one item; date items are computed from `today`."""
    if "date" in item:
        day = resolve_day(item["date"], today.date())
        assert day is not None
        return [rf"\b({ordinal_words(day.day)}|{day.day}(st|nd|rd|th)?)\b.*\b{MONTHS[day.month - 1]}\b",
                rf"\b{MONTHS[day.month - 1]} {day.day}\b"]
    if "days_until" in item:
        day = resolve_day(item["days_until"], today.date())
        assert day is not None
        days = (day - today.date()).days
        return [rf"\b{days}\b", rf"\b{say_value(days)}\b"]
    return list(item["accept"])


async def ask_all(url: str, questions: list[dict[str, Any]], today: datetime) -> list[Outcome]:
    from voice_pipeline_client.realtime import RealtimeClient

    outcomes = []
    for item in questions:
        async with RealtimeClient(url) as client:
            await client.start()
            content = [{"type": "input_text", "text": item["text"]}]
            await client.send({"type": "conversation.item.create", "item": {"role": "user", "content": content}})
            metrics = await client.wait_for("turn.metrics", 180)
            text = client.received.of_type("response.done")[0].get("text", "")
        right = any(re.search(pattern, text, re.IGNORECASE) for pattern in accepted(item, today))
        outcomes.append(Outcome(item["id"], item["kind"], right, metrics.get("route", ""),
                                metrics.get("route_reason", ""), text))
    return outcomes


async def run(builtin: bool, questions: list[dict[str, Any]]) -> list[Outcome]:
    from voice_pipeline.assistant import Assistant

    assistant = Assistant(builtin=builtin)
    assistant.settings.telephony.sip_enabled = False
    async with assistant.running() as url:
        return await ask_all(url, questions, datetime.now().astimezone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("with", "without"))
    parser.add_argument("--json", type=Path, help="write every reply and verdict here")
    args = parser.parse_args()
    questions = json.loads(QUESTIONS.read_text())["questions"]
    results: dict[str, list[Outcome]] = {}
    for label, builtin in (("without", False), ("with", True)):
        if args.only in (None, label):
            results[label] = asyncio.run(run(builtin, questions))
    for label, outcomes in results.items():
        kinds = sorted({o.kind for o in outcomes})
        by_kind = ", ".join(f"{k} {sum(o.right for o in outcomes if o.kind == k)}/{sum(o.kind == k for o in outcomes)}"
                            for k in kinds)
        print(f"{label} tools: {sum(o.right for o in outcomes)}/{len(outcomes)} right ({by_kind})")
        for o in outcomes:
            print(f"  {'ok ' if o.right else 'BAD'} {o.id:12} {o.route}/{o.reason:10} {o.text[:90]!r}")
    if args.json:
        args.json.write_text(json.dumps({k: [o.__dict__ for o in v] for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
