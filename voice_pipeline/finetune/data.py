"""The voice training data: read the hand-written sources, add templated examples, check the rules,
write versioned chat-format JSONL (`{"messages": [...], "source": "..."}`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from voice_pipeline.finetune.templated import normalize_prompt, templated_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
VOICE_LORA_DIR = REPO_ROOT / "models" / "voice_lora"
DATA_ROOT = VOICE_LORA_DIR / "data"
EVAL_DIR = DATA_ROOT / "v1"  # held-out prompts and factual set: the gate, never trained on
TRAIN_VERSION = "v2"
# Each training version's hand-written sources; v2 is v1 plus short everyday facts with small numbers.
TRAIN_SOURCES = {
    "v1": ("v1/src/train_single.txt", "v1/src/train_multi.txt"),
    "v2": ("v1/src/train_single.txt", "v1/src/train_multi.txt", "v2/src/train_short_facts.txt"),
}
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


def _dialogues(system: str, relative: str) -> list[Conversation]:
    text = (DATA_ROOT / relative).read_text(encoding="utf-8")
    return [conversation(system, turns, source) for source, turns in parse_dialogues(text, "handwritten")]


def build(version: str = TRAIN_VERSION) -> dict[str, list[Conversation]]:
    """{"train": [...], "heldout": [...]}; templated prompts never repeat a held-out or factual one."""
    system = system_prompt()
    train = [c for relative in TRAIN_SOURCES[version] for c in _dialogues(system, relative)]
    heldout = _dialogues(system, "v1/src/heldout.txt")
    excluded = {normalize_prompt(t) for c in heldout for t in c.user_turns()}
    excluded |= {normalize_prompt(item["question"]) for item in load_factual()}
    excluded |= {normalize_prompt(item["question"]) for item in load_factual("factual_dev")}
    pairs = templated_pairs(excluded, version)
    train += [conversation(system, [("user", p), ("assistant", r)], "templated") for p, r in pairs]
    return {"train": train, "heldout": heldout}


def split_path(name: str, version: str = TRAIN_VERSION) -> Path:
    """Training data lives in its version's folder; the evaluation sets stay in v1."""
    return DATA_ROOT / (version if name == "train" else "v1") / f"{name}.jsonl"


def write(splits: dict[str, list[Conversation]], version: str = TRAIN_VERSION) -> None:
    for name, conversations in splits.items():
        lines = [c.to_json() for c in conversations]
        split_path(name, version).write_text("\n".join(lines) + "\n", encoding="utf-8")


def load(name: str, version: str = TRAIN_VERSION) -> list[Conversation]:
    with open(split_path(name, version), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [Conversation(tuple(r["messages"]), r.get("source", "")) for r in records]


def load_factual(name: str = "factual") -> list[dict]:
    """[{"question": ..., "accept": [lower-case answer strings]}, ...]: `factual` is the gate,
    `factual_dev` the separate set used to choose between training runs."""
    with open(EVAL_DIR / f"{name}.jsonl", encoding="utf-8") as handle:
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
