"""Speech over the assistant through a real server: backchannels, echo and real barge-ins.

A `Microphone` streams at real-time pace like `RealtimeClient.stream`, and can mix into what it
captures (a) the user's words, when told to say them, and (b) the assistant's own voice as a
speaker next to it would return it: the reply audio is "played" the way a client plays it (each
chunk after the previous one, from its arrival; `output_audio_buffer.cleared` drops what is
left) and comes back `echo_delay_ms` later at `echo_db` (speakerphone, a phone line without
echo cancellation). `overlap_trial` asks a question that gets a long reply, speaks over it, and
says what became of the reply (and when `output_audio_buffer.paused` came). Used by
`voice-pipeline bench` and tests/integration/test_barge_in.py.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

import numpy as np

from voice_pipeline.audio import resample

FRAME_MS = 20
LONG_QUESTION = "Tell me a long story about a brave knight and a dragon."
BACKCHANNELS = ("Mhm.", "Yeah.", "Okay.", "Right.", "Uh-huh.")
BARGE_INS = ("Stop.", "Wait, no, I meant Paris.")


class Microphone:
    def __init__(self, client, rate_hz: int, output_rate_hz: int, echo_db: float | None = None,
                 echo_delay_ms: float = 150.0) -> None:
        self.client, self.rate_hz, self.output_rate_hz = client, rate_hz, output_rate_hz
        self.echo_gain = None if echo_db is None else 10 ** (echo_db / 20.0)
        self.echo_delay_s = echo_delay_ms / 1000.0
        self._say: collections.deque[np.ndarray] = collections.deque()
        self._played: list[tuple[float, np.ndarray]] = []  # (play start t, samples at rate_hz)
        self._play_cursor_t = 0.0
        self._seen_audio = 0
        self._cleared_seen = 0
        self._speaking = False
        self.said_at: list[float] = []  # when each utterance's first sample was captured

    def say(self, samples: np.ndarray) -> None:
        self._say.append(np.asarray(samples, dtype=np.float32))

    @property
    def saying(self) -> bool:
        return bool(self._say)

    async def run(self, done: asyncio.Event, timeout_s: float) -> None:
        n = self.rate_hz * FRAME_MS // 1000
        t0 = time.monotonic()
        k = 0
        while not done.is_set() and time.monotonic() - t0 < timeout_s:
            k += 1
            delay = t0 + k * FRAME_MS / 1000.0 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame_start_t = t0 + (k - 1) * FRAME_MS / 1000.0
            await self.client.send_audio(self._frame(n, frame_start_t))

    def _frame(self, n: int, start_t: float) -> np.ndarray:
        frame = np.zeros(n, dtype=np.float32)
        if self._say:
            head = self._say[0]
            take = head[:n]
            if not self._speaking:
                self.said_at.append(start_t)
                self._speaking = True
            frame[: len(take)] += take
            rest = head[n:]
            if len(rest):
                self._say[0] = rest
            else:
                self._say.popleft()
                self._speaking = False
        if self.echo_gain is not None:
            self._follow_playback()
            frame += self.echo_gain * self._played_between(start_t - self.echo_delay_s, n)
        return frame

    def _follow_playback(self) -> None:
        """Schedule newly received reply audio like a player would, and drop it on a clear."""
        received = self.client.received
        cleared = [t for t, e in received.events if e.get("type") == "output_audio_buffer.cleared"]
        for t in cleared[self._cleared_seen :]:
            self._played = [(s, a[: max(0, int((t - s) * self.rate_hz))]) for s, a in self._played]
            self._play_cursor_t = min(self._play_cursor_t, t)
        self._cleared_seen = len(cleared)
        for t, chunk in received.audio[self._seen_audio :]:
            samples = resample(chunk, self.output_rate_hz, self.rate_hz)
            start = max(self._play_cursor_t, t)
            self._played.append((start, samples))
            self._play_cursor_t = start + len(samples) / self.rate_hz
        self._seen_audio = len(received.audio)

    def _played_between(self, start_t: float, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        for play_t, samples in self._played[-200:]:
            offset = int(round((play_t - start_t) * self.rate_hz))
            lo, hi = max(0, offset), min(n, offset + len(samples))
            if lo < hi:
                out[lo:hi] += samples[lo - offset : hi - offset]
        return out


@dataclass
class OverlapResult:
    kind: str  # "backchannel" | "echo" | "barge_in"
    text: str
    # The first reply's response.done status ("completed", "cancelled"), or with `settle_s`:
    # "continuing" (still speaking `settle_s` after the words, audio flowing), "stalled" (no audio since)
    reply_status: str
    false_speech: bool  # echo: a speech_started while only the echo was in the input
    stop_ms: float | None  # barge_in: from the first captured sample of the words to the reply's last audio
    cleared_ms: float | None  # barge_in: ... to output_audio_buffer.cleared
    echo: bool = False  # the reply's own voice came back into the input (-10 dB, 150 ms) during the trial
    # from the first captured sample of the words to output_audio_buffer.paused (a client that knows the
    # event stops playing then), and whether the reply was then resumed
    paused_ms: float | None = None
    resumed: bool = False

    @property
    def interrupted(self) -> bool:
        return self.reply_status == "cancelled"


async def _until_transcribed(client, since_t: float, timeout_s: float) -> None:
    """Wait (at most `timeout_s`) for a transcription event that arrived after `since_t`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(t > since_t and e.get("type", "").startswith("conversation.item.input_audio_transcription.")
               for t, e in client.received.events):
            return
        await asyncio.sleep(0.05)


async def overlap_trial(url: str, kind: str, words: np.ndarray | None, text: str, rate_hz: int = 16_000,
                        question: np.ndarray | None = None, after_reply_s: float = 1.0,
                        timeout_s: float = 90.0, echo: bool | None = None, settle_s: float | None = None,
                        record: list[tuple[float, dict]] | None = None) -> OverlapResult:
    """Ask `question` (audio at `rate_hz`), then `after_reply_s` into the reply say `words` (or, for
    "echo", say nothing while the reply comes back at -10 dB, 150 ms late; `echo=True` adds that echo to
    the other kinds too) and follow the first reply: to its response.done, or with `settle_s` for that long
    after the words (then it is cancelled: a reply still speaking then was not interrupted). `record`, if
    given, receives every server event as (arrival time, event) and each audio chunk as (time, {"type": "audio"})."""
    from voice_pipeline_client.realtime import RealtimeClient

    async with RealtimeClient(url) as client:
        await client.start(input_audio_format={"encoding": "pcm16", "sample_rate": rate_hz})
        output_rate_hz = client.session.get("output_audio_format", {}).get("sample_rate", 22_050)
        with_echo = kind == "echo" if echo is None else echo
        mic = Microphone(client, rate_hz, output_rate_hz, echo_db=-10.0 if with_echo else None)
        done = asyncio.Event()
        microphone = asyncio.create_task(mic.run(done, timeout_s))
        try:
            if question is not None:
                mic.say(question)
            started = await client.wait_for("output_audio_buffer.started", timeout_s)
            rid = started["response_id"]
            started_t = client.received.first_time("output_audio_buffer.started", response_id=rid)
            await asyncio.sleep(after_reply_s)
            words_s = 0.0
            if words is not None:
                mic.say(words)
                words_s = len(words) / rate_hz
            try:
                wait_s = timeout_s if settle_s is None else words_s + settle_s
                finished = await client.wait_for("response.done", wait_s, response_id=rid)
            except TimeoutError:
                settled_t = time.monotonic()
                flowing = any(t > settled_t - settle_s / 2 for t, _ in client.received.audio) if settle_s else False
                finished = {"status": "continuing" if flowing else "stalled"}
                await client.send({"type": "response.cancel"})
            await asyncio.sleep(0.3)
            if kind == "barge_in" and mic.said_at:
                # A long interruption cancels the reply before its words are transcribed: the record
                # goes on until they are, so it shows them (or shows they never came).
                await _until_transcribed(client, mic.said_at[-1], timeout_s=10.0)
        finally:
            done.set()
            await microphone
        received = client.received
    if record is not None:
        record.extend(sorted(received.events + [(t, {"type": "audio"}) for t, _ in received.audio], key=lambda x: x[0]))
    speech_after = [t for t, e in received.events if e.get("type") == "input_audio_buffer.speech_started"
                    and t > (started_t or 0.0)]
    stop_ms = cleared_ms = paused_ms = None
    if words is not None and mic.said_at:
        paused_t = next((t for t, e in received.events if e.get("type") == "output_audio_buffer.paused"
                         and e.get("response_id") == rid and t >= mic.said_at[-1]), None)
        paused_ms = None if paused_t is None else 1000.0 * (paused_t - mic.said_at[-1])
    resumed = received.first_time("output_audio_buffer.resumed", response_id=rid) is not None
    if kind == "barge_in" and mic.said_at:
        said_t = mic.said_at[-1]
        last_audio = [t for t, _ in received.audio if t >= said_t]
        # the reply's audio after the words started, up to the clear (a new reply may follow)
        cleared_t = received.first_time("output_audio_buffer.cleared", response_id=rid)
        if cleared_t is not None:
            cleared_ms = 1000.0 * (cleared_t - said_t)
            tail = [t for t in last_audio if t <= cleared_t]
            stop_ms = 1000.0 * ((max(tail) if tail else said_t) - said_t)
    return OverlapResult(kind, text, finished.get("status", "none"), kind == "echo" and bool(speech_after),
                         stop_ms, cleared_ms, with_echo, paused_ms=paused_ms, resumed=resumed)
