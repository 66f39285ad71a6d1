"""The voice training data: read the hand-written sources, add templated examples, check the rules,
write versioned chat-format JSONL (`{"messages": [...], "source": "..."}`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .templated import normalize_prompt, templated_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
VOICE_LORA_DIR = REPO_ROOT / "models" / "voice_lora"
DATA_DIR = VOICE_LORA_DIR / "data" / "v1"
SYSTEM_PROMPT_FILE = REPO_ROOT / "models" / "prompts" / "system.txt"

MAX_REPLY_WORDS = 50
MAX_REPLY_SENTENCES = 3
_MARKDOWN = re.compile(r"[*#`_|\[\]<>~]|^\s*(?:[-+]\s|\d+[.)]\s)", re.MULTILINE)
_LINK = re.compile(r"https?:|www\.|\.(?:com|org|net)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


@dataclass(frozen=True)
class Conversation:
    messages: tuple[dict, ...]  # {"role": ..., "content": ...}, the system prompt first
    source: str

    def to_json(self) -> str:
        return json.dumps({"messages": list(self.messages), "source": self.source}, ensure_ascii=False)

    def user_turns(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "user"]

    def replies(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


def system_prompt() -> str:
    return SYSTEM_PROMPT_FILE.read_text(encoding="utf-8").strip()


def parse_dialogues(text: str, origin: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Yield (source, [(role, content), ...]) from the "## section / U: / A:" text format."""
    section, turns = "", []
    for line in text.splitlines() + [""]:
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith(("U: ", "A: ")):
            turns.append(("user" if line[0] == "U" else "assistant", line[3:].strip()))
        elif not line.strip() and turns:
            yield f"{origin}:{section}", turns
            turns = []


def conversation(system: str, turns: Iterable[tuple[str, str]], source: str) -> Conversation:
    messages = [{"role": "system", "content": system}]
    messages += [{"role": role, "content": content} for role, content in turns]
    return Conversation(tuple(messages), source)


def build(src_dir: Path = DATA_DIR / "src") -> dict[str, list[Conversation]]:
    """{"train": [...], "heldout": [...]}; templated prompts never repeat a held-out or factual one."""
    system = system_prompt()
    train = [
        conversation(system, turns, source)
        for name in ("train_single", "train_multi")
        for source, turns in parse_dialogues((src_dir / f"{name}.txt").read_text(encoding="utf-8"), "handwritten")
    ]
    heldout = [
        conversation(system, turns, source)
        for source, turns in parse_dialogues((src_dir / "heldout.txt").read_text(encoding="utf-8"), "handwritten")
    ]
    excluded = {normalize_prompt(t) for c in heldout for t in c.user_turns()}
    excluded |= {normalize_prompt(item["question"]) for item in load_factual()}
    train += [conversation(system, [("user", p), ("assistant", r)], "templated") for p, r in templated_pairs(excluded)]
    return {"train": train, "heldout": heldout}


def write(splits: dict[str, list[Conversation]], out_dir: Path = DATA_DIR) -> None:
    for name, conversations in splits.items():
        lines = [c.to_json() for c in conversations]
        (out_dir / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def load(name: str, data_dir: Path = DATA_DIR) -> list[Conversation]:
    with open(data_dir / f"{name}.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [Conversation(tuple(r["messages"]), r.get("source", "")) for r in records]


def load_factual(data_dir: Path = DATA_DIR) -> list[dict]:
    """[{"question": ..., "accept": [lower-case answer strings]}, ...]"""
    with open(data_dir / "factual.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def reply_problems(reply: str) -> list[str]:
    """Why a reply breaks the voice rules (empty when it follows them)."""
    problems = []
    if _MARKDOWN.search(reply):
        problems.append("markdown or list marker")
    if _LINK.search(reply):
        problems.append("link")
    if not reply.isascii():
        problems.append("non-ASCII (emoji or symbols)")
    if any(c.isdigit() for c in reply):
        problems.append("digits (numbers must be written as said)")
    if "\n" in reply:
        problems.append("line break")
    if len(reply.split()) > MAX_REPLY_WORDS:
        problems.append(f"more than {MAX_REPLY_WORDS} words")
    if len(_SENTENCE_END.findall(reply)) > MAX_REPLY_SENTENCES:
        problems.append(f"more than {MAX_REPLY_SENTENCES} sentences")
    if not reply.rstrip().endswith((".", "!", "?")):
        problems.append("does not end a sentence")
    return problems
