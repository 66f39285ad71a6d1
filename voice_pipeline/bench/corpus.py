"""The benchmark corpus: a versioned JSON definition, turned into 16 kHz audio at bench time.

Each item is spoken by Piper (the embedded joe voice at a given length_scale) or by the
`espeak-ng` binary (one of its voices at a given words-per-minute), optionally with a long pause
in the middle of the sentence, then mixed with generated background noise: pink, brown, or
babble made from other items of the corpus. The reference text stays with each item for WER.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voice_pipeline.audio import PIPELINE_RATE_HZ, read_wav, resample

if TYPE_CHECKING:
    from piper import PiperVoice, SynthesisConfig

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus" / "v1.json"
SPEECH_SEED = 2026  # onnxruntime's seed for the noise Piper draws while speaking a corpus or a test's question


def seeded_piper_voice(name: str = "en_US-joe-medium") -> PiperVoice:
    """A Piper voice whose random draws (phoneme durations and the latent's noise, RandomNormalLike
    nodes in its ONNX graph) come from a fixed seed: onnxruntime seeds each such node from its
    global seed when the session is made. A process that speaks the same texts in the same order
    then hears the same audio in every run, so a corpus, a CI gate on it and the arms of an A/B all
    hear one rendition (unseeded, whisper heard a different sentence now and then). For corpora and
    tests only: the global seed also fixes the sessions this process makes later."""
    import onnxruntime
    from piper import PiperVoice

    from voice_pipeline.engines.registry import piper_voice

    model, config = piper_voice(name)
    onnxruntime.set_seed(SPEECH_SEED)
    return PiperVoice.load(model, config_path=config)


def piper_speech(voice: PiperVoice, text: str, config: SynthesisConfig | None = None) -> np.ndarray:
    """`text` spoken by `voice`: float32 at the voice's own sample rate."""
    return np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, config)])


@functools.cache
def _joe() -> PiperVoice:
    return seeded_piper_voice()


def clear_speech(text: str) -> tuple[np.ndarray, int]:
    """`text` spoken by joe with Piper's random variation off (noise scales 0): the same audio for
    the same text in any process and any order, the voice's plainest rendition. Tests' questions use
    it: they check the pipeline, not whisper on an unlucky rendition (one seeded rendition of "What
    is the capital of France?" is heard as "... of friends" through the server, every time).
    (float32 audio, its sample rate)."""
    from piper import SynthesisConfig

    voice = _joe()
    return piper_speech(voice, text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)), voice.config.sample_rate


@dataclass(frozen=True)
class CorpusItem:
    item_id: str
    text: str
    engine: str  # "piper" | "espeak"
    voice: str
    length_scale: float = 1.0  # piper
    words_per_minute: int = 170  # espeak
    noise_kind: str = "none"  # none | pink | brown | babble
    snr_db: float = 0.0
    pause_after_word: int = 0
    pause_ms: int = 0

    @classmethod
    def from_json(cls, data: dict) -> "CorpusItem":
        noise, pause = data.get("noise") or {}, data.get("pause") or {}
        return cls(
            item_id=data["id"], text=data["text"], engine=data["engine"], voice=data["voice"],
            length_scale=float(data.get("length_scale", 1.0)),
            words_per_minute=int(data.get("words_per_minute", 170)),
            noise_kind=noise.get("kind", "none"), snr_db=float(noise.get("snr_db", 0.0)),
            pause_after_word=int(pause.get("after_word", 0)), pause_ms=int(pause.get("ms", 0)),
        )

    @property
    def speed(self) -> str:
        return f"length_scale={self.length_scale}" if self.engine == "piper" else f"{self.words_per_minute} wpm"

    def describe(self) -> dict:
        return {"id": self.item_id, "engine": self.engine, "voice": self.voice, "speed": self.speed,
                "noise": self.noise_kind, "snr_db": self.snr_db, "pause_ms": self.pause_ms}


@dataclass(frozen=True)
class Corpus:
    version: int
    items: tuple[CorpusItem, ...]
    quick_ids: tuple[str, ...]
    baseline_ids: tuple[str, ...]
    lead_silence_ms: int
    tail_ms: int
    seed: int
    path: str

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CORPUS) -> "Corpus":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            version=int(data["version"]),
            items=tuple(CorpusItem.from_json(item) for item in data["items"]),
            quick_ids=tuple(data["quick_ids"]),
            baseline_ids=tuple(data["baseline_ids"]),
            lead_silence_ms=int(data["lead_silence_ms"]),
            tail_ms=int(data["tail_ms"]),
            seed=int(data["seed"]),
            path=str(path),
        )

    def select(self, ids: tuple[str, ...] | None) -> list[CorpusItem]:
        if ids is None:
            return list(self.items)
        by_id = {item.item_id: item for item in self.items}
        return [by_id[i] for i in ids]


@dataclass(frozen=True)
class SpokenItem:
    """One item's audio, ready to stream: lead silence, speech, then `tail_ms` of background."""

    item: CorpusItem
    audio_16k: np.ndarray
    speech_start_s: float
    speech_end_s: float  # where the last speech sample lies (by the synthesized signal, before noise)

    @property
    def speech_s(self) -> float:
        return self.speech_end_s - self.speech_start_s


class Synthesizer:
    """Speaks corpus text with Piper (loaded once) or espeak-ng, always returning 16 kHz float32."""

    def __init__(self) -> None:
        self._piper: PiperVoice | None = None

    def speak(self, item: CorpusItem, text: str) -> np.ndarray:
        audio = self._piper_speak(item, text) if item.engine == "piper" else self._espeak(item, text)
        return _trim(audio)

    def _piper_speak(self, item: CorpusItem, text: str) -> np.ndarray:
        from piper import SynthesisConfig

        if self._piper is None:
            self._piper = seeded_piper_voice(item.voice)
        speech = piper_speech(self._piper, text, SynthesisConfig(length_scale=item.length_scale))
        return resample(speech, self._piper.config.sample_rate, PIPELINE_RATE_HZ)

    @staticmethod
    def _espeak(item: CorpusItem, text: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "espeak.wav"
            subprocess.run(
                ["espeak-ng", "-v", item.voice, "-s", str(item.words_per_minute), "-w", str(wav), text],
                check=True, capture_output=True, timeout=60,
            )
            audio, rate_hz = read_wav(wav)
        return resample(audio, rate_hz, PIPELINE_RATE_HZ)


def build(corpus: Corpus, items: list[CorpusItem], synthesizer: Synthesizer | None = None) -> list[SpokenItem]:
    """Synthesize and mix every item; babble draws on the clean speech of the other items."""
    synthesizer = synthesizer or Synthesizer()
    clean = {item.item_id: _speak_with_pause(synthesizer, item) for item in items}
    babble_pool = [clean[i.item_id] for i in items if i.noise_kind != "babble"] or list(clean.values())
    spoken = []
    for index, item in enumerate(items):
        rng = np.random.default_rng(corpus.seed + index)
        speech = clean[item.item_id]
        lead = int(PIPELINE_RATE_HZ * corpus.lead_silence_ms / 1000)
        tail = int(PIPELINE_RATE_HZ * corpus.tail_ms / 1000)
        audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
        audio = mix_noise(audio, speech, item, rng, babble_pool, speech_span=(lead, lead + len(speech)))
        spoken.append(SpokenItem(item, audio.astype(np.float32), lead / PIPELINE_RATE_HZ,
                                 (lead + len(speech)) / PIPELINE_RATE_HZ))
    return spoken


def _speak_with_pause(synthesizer: Synthesizer, item: CorpusItem) -> np.ndarray:
    if not item.pause_ms:
        return synthesizer.speak(item, item.text)
    words = item.text.split()
    first, second = " ".join(words[: item.pause_after_word]), " ".join(words[item.pause_after_word :])
    gap = np.zeros(int(PIPELINE_RATE_HZ * item.pause_ms / 1000), np.float32)
    return np.concatenate([synthesizer.speak(item, first), gap, synthesizer.speak(item, second)])


def mix_noise(audio: np.ndarray, speech: np.ndarray, item: CorpusItem, rng: np.random.Generator,
              babble_pool: list[np.ndarray], speech_span: tuple[int, int]) -> np.ndarray:
    """Add background at `snr_db` below the speech power. Pink and brown noise cover the whole
    stream (a noisy room stays noisy); babble (other talkers) overlaps the speech only, so the
    assistant's VAD still sees the user stop."""
    if item.noise_kind == "none":
        return audio
    speech_power = float(np.mean(speech**2)) or 1e-6
    if item.noise_kind == "babble":
        start, end = speech_span
        noise = np.zeros(len(audio), np.float32)
        noise[start:end] = babble(rng, babble_pool, end - start)
    else:
        noise = coloured_noise(rng, len(audio), item.noise_kind)
    noise_power = float(np.mean(noise[noise != 0] ** 2)) or 1e-9
    gain = np.sqrt(speech_power / noise_power / (10 ** (item.snr_db / 10)))
    return np.clip(audio + gain * noise, -1.0, 1.0)


def coloured_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Pink (1/f power) or brown (1/f^2 power) noise, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1.0 / PIPELINE_RATE_HZ)
    freqs[0] = freqs[1] if n > 1 else 1.0
    exponent = {"pink": 0.5, "brown": 1.0}[kind]
    shaped = np.fft.irfft(spectrum / freqs**exponent, n)
    return (shaped / (np.max(np.abs(shaped)) or 1.0)).astype(np.float32)


def babble(rng: np.random.Generator, pool: list[np.ndarray], n: int, talkers: int = 3) -> np.ndarray:
    out = np.zeros(n, np.float32)
    for k in rng.choice(len(pool), size=min(talkers, len(pool)), replace=False):
        source = np.tile(pool[k], n // len(pool[k]) + 2)
        offset = int(rng.integers(0, len(pool[k])))
        out += source[offset : offset + n]
    return out


def _trim(audio: np.ndarray, threshold: float = 0.003) -> np.ndarray:
    """Cut the synthesizer's own leading and trailing silence, so speech_end is exact."""
    loud = np.nonzero(np.abs(audio) > threshold)[0]
    if not len(loud):
        return audio.astype(np.float32)
    return audio[loud[0] : loud[-1] + 1].astype(np.float32)
