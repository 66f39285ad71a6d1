"""The pause corpus: spoken turns that pause mid-sentence, and complete questions as controls.

`bench/corpus/pauses-v1.json` is written by `generate()` (run `python -m
voice_pipeline.bench.pause_corpus` to rewrite it; a change means a new version). Each item is one
turn in segments; between two segments the speaker pauses `pauses_ms` (0.5-1.5 s). The whole
sentence is synthesized at once, so the words before a pause keep the intonation of a sentence
that goes on: espeak-ng gets an SSML `<break>` there; for Piper (no SSML) the sentence is cut at
the quietest point near where the first part ends when spoken alone, and silence is inserted.
Voices rotate over Piper joe (three speeds) and espeak-ng (five voices); items alternate between
the `calibrate` split (thresholds are chosen on it) and the `test` split (figures are quoted on it).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ, read_wav, resample
from voice_pipeline.bench.corpus import CorpusItem, Synthesizer

PAUSE_CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "pauses-v1.json"
LEAD_MS = 500
TAIL_MS = 3000

# (first part, rest): the speaker pauses between them. Hesitations ("um") end the first part.
PAUSED = [
    ("Could you check the weather for", "Boston on Saturday?"),
    ("What is the best way to", "get to the airport from here?"),
    ("Set a timer for", "twenty five minutes."),
    ("My phone number is five five five,", "two one three, four four nine eight."),
    ("I'd like to book a table for, um,", "four people at seven."),
    ("Remind me to call", "my sister tomorrow morning."),
    ("The address is one two three", "Maple Street, apartment four."),
    ("Add eggs, milk,", "bread and butter to my shopping list."),
    ("Can you tell me how", "long it takes to boil an egg?"),
    ("Play some music by, uh,", "the Beatles please."),
    ("My zip code is nine four", "one zero seven."),
    ("What time does the", "pharmacy close tonight?"),
    ("Send a message to", "John saying I'll be late."),
    ("How many ounces are in", "a cup?"),
    ("I need directions to, um,", "the nearest gas station."),
    ("Translate good morning into", "Spanish please."),
    ("The card number ends in four", "seven two one."),
    ("Turn off the lights in the", "living room."),
    ("What's the difference between", "a virus and a bacterium?"),
    ("Schedule a meeting with Anna on", "Tuesday at three."),
    ("I want to order, hmm,", "a large pepperoni pizza."),
    ("Call me back at eight one seven,", "three three two, zero nine zero nine."),
    ("Pack sunscreen, a towel,", "and two bottles of water."),
    ("Tell me a joke about", "programmers."),
    ("Convert one hundred dollars to", "euros."),
    ("I live at forty two", "Baker Street in London."),
    ("Is it going to rain", "in Seattle tomorrow afternoon?"),
    ("My flight number is U A", "eight eight one."),
    ("First preheat the oven, then", "mix the flour and sugar."),
    ("Could you, um,", "turn the volume down a bit?"),
    ("Find me a recipe that uses", "chicken, rice and broccoli."),
    ("The meeting code is three three nine,", "one four seven, two."),
    ("What is the capital of", "Australia?"),
    ("Wake me up at", "six thirty tomorrow."),
    ("Text mom that, uh,", "dinner is at eight."),
    ("I'm looking for a, um,", "a good Italian restaurant nearby."),
]
COMPLETE = [
    "What is the capital of France?",
    "How tall is Mount Everest?",
    "Set a timer for ten minutes.",
    "What time is it in Tokyo?",
    "Can you recommend a good book?",
    "Turn on the kitchen lights.",
    "What's the weather like today?",
    "How do I make pancakes?",
    "Who wrote Pride and Prejudice?",
    "Call my dentist.",
    "Play some jazz.",
    "My number is five five five, one two three four.",
    "Add milk and eggs to my list.",
    "What's seven times eight?",
    "Remind me to water the plants.",
    "Where is the nearest hospital?",
]
VOICES = [
    {"engine": "piper", "voice": "en_US-joe-medium", "length_scale": 1.0},
    {"engine": "espeak", "voice": "en-us", "words_per_minute": 165},
    {"engine": "espeak", "voice": "en-gb", "words_per_minute": 150},
    {"engine": "piper", "voice": "en_US-joe-medium", "length_scale": 1.15},
    {"engine": "espeak", "voice": "en-us+f3", "words_per_minute": 170},
    {"engine": "espeak", "voice": "en-gb-scotland", "words_per_minute": 155},
    {"engine": "piper", "voice": "en_US-joe-medium", "length_scale": 0.9},
    {"engine": "espeak", "voice": "en-029", "words_per_minute": 160},
]
PAUSES_MS = [500, 700, 900, 1100, 1300, 1500]


def generate() -> dict:
    items = []
    for i, (first, rest) in enumerate(PAUSED):
        items.append({"id": f"p{i + 1:02d}", "kind": "pause", "segments": [first, rest],
                      "pauses_ms": [PAUSES_MS[i % len(PAUSES_MS)]], **VOICES[i % len(VOICES)]})
    for i, text in enumerate(COMPLETE):
        items.append({"id": f"c{i + 1:02d}", "kind": "complete", "segments": [text], "pauses_ms": [],
                      **VOICES[(i + 3) % len(VOICES)]})
    for n, item in enumerate(items):
        item["split"] = "calibrate" if n % 3 == 0 else "test"
    return {"version": 1, "sample_rate_hz": PIPELINE_RATE_HZ, "lead_ms": LEAD_MS, "tail_ms": TAIL_MS,
            "description": "Turns with a mid-sentence pause (0.5-1.5 s; hesitations, digits, addresses, "
                           "lists) and complete questions as controls; see voice_pipeline/bench/pause_corpus.py.",
            "items": items}


@dataclass(frozen=True)
class PauseItem:
    item_id: str
    kind: str  # "pause" | "complete"
    segments: tuple[str, ...]
    pauses_ms: tuple[int, ...]
    split: str
    voice: CorpusItem  # engine, voice and speed, in the main corpus's terms

    @classmethod
    def from_json(cls, data: dict) -> PauseItem:
        voice = CorpusItem.from_json({"id": data["id"], "text": " ".join(data["segments"]), "engine": data["engine"],
                                      "voice": data["voice"], "length_scale": data.get("length_scale", 1.0),
                                      "words_per_minute": data.get("words_per_minute", 170)})
        return cls(data["id"], data["kind"], tuple(data["segments"]), tuple(data["pauses_ms"]), data["split"], voice)

    @property
    def text(self) -> str:
        return " ".join(s.rstrip(",") for s in self.segments)


@dataclass(frozen=True)
class SpokenTurn:
    """One item's 16 kHz audio with where each speech segment lies (ms from the start of the audio)."""

    item: PauseItem
    audio_16k: np.ndarray
    speech_ms: tuple[tuple[float, float], ...]  # (start, end) of each segment

    @property
    def speech_end_ms(self) -> float:
        return self.speech_ms[-1][1]

    @property
    def pauses(self) -> list[tuple[float, float]]:
        """(start, end) of each mid-turn pause."""
        return [(a[1], b[0]) for a, b in zip(self.speech_ms, self.speech_ms[1:])]


def load(path: str | Path = PAUSE_CORPUS, split: str | None = None) -> list[PauseItem]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = [PauseItem.from_json(item) for item in data["items"]]
    return [item for item in items if split in (None, "all", item.split)]


def speak(items: list[PauseItem], synthesizer: Synthesizer | None = None,
          lead_ms: int = LEAD_MS, tail_ms: int = TAIL_MS) -> list[SpokenTurn]:
    synthesizer = synthesizer or Synthesizer()
    rate = PIPELINE_RATE_HZ / 1000
    turns = []
    for item in items:
        pieces = _speak_segments(synthesizer, item)
        parts = [np.zeros(int(lead_ms * rate), np.float32)]
        spans, pos = [], int(lead_ms * rate)
        for k, audio in enumerate(pieces):
            spans.append((pos / rate, (pos + len(audio)) / rate))
            parts.append(audio)
            pos += len(audio)
            if k < len(item.pauses_ms):
                gap = int(item.pauses_ms[k] * rate)
                parts.append(np.zeros(gap, np.float32))
                pos += gap
        parts.append(np.zeros(int(tail_ms * rate), np.float32))
        turns.append(SpokenTurn(item, np.concatenate(parts), tuple(spans)))
    return turns


def _speak_segments(synthesizer: Synthesizer, item: PauseItem) -> list[np.ndarray]:
    """Each segment's speech, cut out of one synthesis of the whole sentence (silences trimmed)."""
    if len(item.segments) == 1:
        return [synthesizer.speak(item.voice, item.segments[0])]
    if item.voice.engine == "espeak":
        marked = " ".join(f'{seg} <break time="{ms}ms"/>' for seg, ms in zip(item.segments, item.pauses_ms))
        whole = _espeak_ssml(item.voice, f"<speak>{marked} {item.segments[-1]}</speak>")
        return _split_at_silences(whole, len(item.segments) - 1, min(item.pauses_ms))
    whole = synthesizer.speak(item.voice, " ".join(item.segments))
    pieces, rest = [], whole
    for k in range(len(item.segments) - 1):
        alone = len(synthesizer.speak(item.voice, item.segments[k]))
        cut = _quietest(rest, alone, window=int(0.15 * PIPELINE_RATE_HZ))
        pieces.append(_trim_silence(rest[:cut]))
        rest = rest[cut:]
    return [*pieces, _trim_silence(rest)]


def _espeak_ssml(voice: CorpusItem, ssml: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-m", "-v", voice.voice, "-s", str(voice.words_per_minute), "-w", str(wav), ssml],
                       check=True, capture_output=True, timeout=60)
        audio, rate_hz = read_wav(wav)
    return _trim_silence(resample(audio, rate_hz, PIPELINE_RATE_HZ))


def _frame_energy(audio: np.ndarray, frame: int = 160) -> np.ndarray:
    n = len(audio) // frame
    return np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))


def _quietest(audio: np.ndarray, near: int, window: int, frame: int = 160) -> int:
    energy = _frame_energy(audio, frame)
    lo, hi = max(1, (near - window) // frame), min(len(energy) - 1, (near + window) // frame)
    return (lo + int(np.argmin(energy[lo:hi]))) * frame if hi > lo else near


def _split_at_silences(audio: np.ndarray, count: int, min_pause_ms: int, frame: int = 160) -> list[np.ndarray]:
    """Cut `audio` at its `count` longest silent runs (each at least 80 % of the shortest pause)."""
    quiet = _frame_energy(audio, frame) < 0.003
    runs, start = [], None
    for i, q in enumerate([*quiet, False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            runs.append((i - start, start, i))
            start = None
    long_runs = sorted(r for r in runs if r[0] * frame >= 0.8 * min_pause_ms * PIPELINE_RATE_HZ / 1000)[-count:]
    if len(long_runs) < count:
        raise ValueError("the synthesized sentence lacks its pauses")
    pieces, pos = [], 0
    for _, a, b in sorted(long_runs, key=lambda r: r[1]):
        pieces.append(_trim_silence(audio[pos : a * frame]))
        pos = b * frame
    return [*pieces, _trim_silence(audio[pos:])]


def _trim_silence(audio: np.ndarray, threshold: float = 0.003) -> np.ndarray:
    loud = np.nonzero(np.abs(audio) > threshold)[0]
    return audio[loud[0] : loud[-1] + 1].astype(np.float32) if len(loud) else audio.astype(np.float32)


if __name__ == "__main__":
    PAUSE_CORPUS.write_text(json.dumps(generate(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {PAUSE_CORPUS}")
