"""Piper's sentences a window of frames at a time (engines/piper_stream.py), on the embedded voice."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime
import pytest
from piper import SynthesisConfig

from voice_pipeline.app.settings import TtsSettings
from voice_pipeline.engines import piper as piper_engine
from voice_pipeline.engines.piper import PiperTts, load_voice
from voice_pipeline.engines.piper_stream import FixedGainVoice, StreamingVoice, VoiceProfile, split_piper_model
from voice_pipeline.engines.registry import piper_voice
from voice_pipeline.engines.vad import silero_model_path

VOICE = "en_US-joe-medium"
NOISE_OFF = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
SENTENCES = ["Hi!", "The capital of France is Paris.",
             "The moon is about three hundred eighty thousand kilometres away, give or take a few thousand, "
             "depending on where it is in its orbit around the Earth."]


class _Counting:
    """An onnxruntime session that records the frames of each call."""

    def __init__(self, session) -> None:
        self.session, self.frames = session, []

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, outputs, feeds):
        self.frames.append(max(v.shape[-1] for v in feeds.values()))
        return self.session.run(outputs, feeds)


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    whole = load_voice(VOICE, "cpu", threads=2)
    model = piper_voice(VOICE)[0]
    graphs = split_piper_model(model)
    sessions = tuple(_Counting(onnxruntime.InferenceSession(g, providers=["CPUExecutionProvider"]))
                     for g in (graphs.front, graphs.flow, graphs.decoder))
    streaming = StreamingVoice(whole, sessions, graphs, first_frames=26,
                               profile_cache=tmp_path_factory.mktemp("profiles"), model_path=model)
    return whole, streaming


def _ids(voice, text):
    return voice.phonemes_to_ids(voice.phonemize(text)[0])


def test_the_windows_together_are_the_whole_sentence(voices):
    whole, streaming = voices
    counts = []
    for text in SENTENCES:
        ids = _ids(whole, text)
        alone = whole.phoneme_ids_to_audio(ids, NOISE_OFF)
        windows = list(streaming.windows(ids, NOISE_OFF))
        together = np.concatenate(windows)
        assert len(together) == len(alone)
        assert np.abs(together - alone).max() < 1e-4
        counts.append(len(windows))
    assert counts[0] == 1  # a word: one window, no context computed twice
    one = list(streaming.windows(_ids(whole, SENTENCES[-1]), NOISE_OFF, first_frames=0))
    assert len(one) == 1 and np.abs(one[0] - whole.phoneme_ids_to_audio(_ids(whole, SENTENCES[-1]), NOISE_OFF)).max() < 1e-4
    assert counts[-1] >= 3
    hop = whole.config.hop_length
    assert len(next(streaming.windows(_ids(whole, SENTENCES[-1]), NOISE_OFF))) == 26 * hop


def test_the_first_window_is_made_before_the_rest_of_the_sentence(voices):
    whole, streaming = voices
    front, flow, decoder = streaming.sessions
    for session in streaming.sessions:
        session.frames.clear()
    ids = _ids(whole, SENTENCES[-1])
    windows = streaming.windows(ids, NOISE_OFF)
    next(windows)
    frames = front.frames  # the front's output is per phoneme, then the sentence's frames
    sentence_frames = len(whole.phoneme_ids_to_audio(ids, NOISE_OFF)) // whole.config.hop_length
    assert len(frames) == 1 and len(flow.frames) == 1 and len(decoder.frames) == 1
    profile = streaming.profile
    assert flow.frames[0] == 26 + profile.decoder_context + profile.flow_context < sentence_frames
    assert decoder.frames[0] == 26 + profile.decoder_context
    list(windows)
    assert flow.frames[1] == sentence_frames and len(decoder.frames) >= 3


def test_each_stage_s_context_is_measured_on_the_voice(voices):
    profile = voices[1].profile
    # joe-medium: 4 coupling layers of 4 convolutions of kernel 5 (2 frames each side) in the flow,
    # kernel 7 and dilated residual blocks in the decoder
    assert profile.flow_context == 33
    assert 8 <= profile.decoder_context <= 16
    assert 1.0 < profile.gain < 4.0


def test_every_sentence_gets_the_voice_s_one_gain(voices):
    whole, streaming = voices
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    for text in SENTENCES[:2]:
        chunks = list(streaming.synthesize(text, config))
        raw = np.concatenate(list(streaming.windows(_ids(whole, text), NOISE_OFF)))
        spoken = np.concatenate([c.audio_float_array for c in chunks])
        assert spoken.dtype == np.float32
        assert np.allclose(spoken, np.clip(raw * streaming.profile.gain, -1, 1), atol=1e-5)
    quieter = list(streaming.synthesize(SENTENCES[1], SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, volume=0.5)))
    louder = list(streaming.synthesize(SENTENCES[1], config))
    assert np.abs(quieter[0].audio_float_array).max() == pytest.approx(np.abs(louder[0].audio_float_array).max() / 2,
                                                                       rel=1e-4)


def test_whole_sentences_of_the_later_lane_get_the_same_gain(voices):
    whole, streaming = voices
    later = FixedGainVoice(whole, streaming.profile.gain)
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    for text in SENTENCES[1:]:
        (chunk,) = later.synthesize(text, config)
        streamed = np.concatenate([c.audio_float_array for c in streaming.synthesize(text, config)])
        assert np.abs(chunk.audio_float_array - streamed).max() < 1e-4
    (raw,) = later.synthesize(SENTENCES[1], NOISE_OFF)  # normalize_audio off: the model's own level
    assert np.allclose(raw.audio_float_array, whole.phoneme_ids_to_audio(_ids(whole, SENTENCES[1]), NOISE_OFF))


def test_the_profile_is_read_back_not_measured_again(voices, tmp_path, monkeypatch):
    whole, streaming = voices
    model = piper_voice(VOICE)[0]
    first = StreamingVoice(whole, streaming.sessions, streaming._graphs, 26, profile_cache=tmp_path, model_path=model)
    monkeypatch.setattr(StreamingVoice, "measure_profile", lambda self: pytest.fail("measured again"))
    second = StreamingVoice(whole, streaming.sessions, streaming._graphs, 26, profile_cache=tmp_path, model_path=model)
    assert second.profile == first.profile
    (cached,) = tmp_path.iterdir()
    cached.write_text("{not json")  # a damaged file is measured again, not trusted
    monkeypatch.setattr(StreamingVoice, "measure_profile", lambda self: VoiceProfile(1, 2, 3.0))
    assert StreamingVoice(whole, streaming.sessions, streaming._graphs, 26, profile_cache=tmp_path,
                          model_path=model).profile == VoiceProfile(1, 2, 3.0)


def test_a_graph_that_cannot_be_cut_is_refused_and_the_voice_is_synthesized_whole(monkeypatch):
    with pytest.raises(ValueError, match="conv_pre"):
        split_piper_model(silero_model_path())

    def refuse(path):
        raise ValueError("no decoder here")

    monkeypatch.setattr(piper_engine, "split_piper_model", refuse)
    voice = load_voice(VOICE, "cpu", threads=1, stream_first_ms=300)
    assert not isinstance(voice, StreamingVoice)
    assert len(list(voice.synthesize("Hello there.", SynthesisConfig()))) == 1


def test_only_a_reply_s_first_piece_comes_in_windows():
    tts = PiperTts(TtsSettings(workers=1, stream_first_ms=300), threads=1)
    text = "The capital of France is Paris, a city known for its art, its food and its museums."

    async def chunks(urgent, first):
        return [len(a) async for a in tts.synthesize(text, urgent=urgent, first=first)]

    first, urgent_later, later = asyncio.run(chunks(True, True)), asyncio.run(chunks(True, False)), \
        asyncio.run(chunks(False, False))
    assert len(first) >= 2 and len(urgent_later) == 1 and len(later) == 1  # windows for the first piece only
    assert first[0] < sum(first) / 2
    assert abs(sum(first) - later[0]) < 0.1 * later[0]  # the same sentence (the noise differs per call)
    assert isinstance(tts._later.resources[0], FixedGainVoice)
    assert "gain" in tts.cache_key  # the phrasebook's cached audio follows the level
    off = PiperTts(TtsSettings(workers=1, stream_first_ms=0), threads=1)
    assert not isinstance(off._voice.resources[0], StreamingVoice)
    assert not isinstance(off._later.resources[0], FixedGainVoice) and "gain" not in off.cache_key
