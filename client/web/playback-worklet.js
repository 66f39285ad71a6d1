// AudioWorklet processor: reply audio (PCM16 at the reply's rate) -> the speakers, via a jitter buffer.
//
// Messages in:  {type: "audio", pcm: ArrayBuffer, rateHz}  queue samples (resampled to sampleRate)
//               {type: "end"}    the reply's audio is complete: play out the rest, then report drained
//               {type: "pause"}  speech over the reply: stop playing at once, keep what is queued
//               {type: "resume"} go on from the very sample where "pause" stopped (nothing lost or repeated)
//               {type: "clear"}  barge-in: drop everything queued, at once (and end a pause)
// Messages out: {type: "stats", ...}  counters of what actually reached the output
//               {type: "drained"}     the queue ran empty after "end"
//
// Playback starts once `prebufferMs` is queued (or at "end"); an underrun goes back to buffering.

import { StreamingResampler } from "./resampler.js";

const STATS_EVERY_BLOCKS = 40; // ~100 ms at 48 kHz

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { prebufferMs = 80 } = options.processorOptions || {};
    this.prebufferSamples = Math.round((sampleRate * prebufferMs) / 1000);
    this.queue = [];
    this.queued = 0;
    this.offset = 0; // read position in queue[0]
    this.playing = false;
    this.ending = false;
    this.paused = false;
    this.resampler = null;
    this.stats = { playedSamples: 0, playedSumSquares: 0, underruns: 0, clears: 0, droppedSamples: 0, pauses: 0 };
    this.blocks = 0;
    this.port.onmessage = (message) => this._onMessage(message.data);
  }

  _onMessage(msg) {
    if (msg.type === "audio") {
      if (!this.resampler || this.resampler.fromHz !== msg.rateHz) {
        this.resampler = new StreamingResampler(msg.rateHz, sampleRate);
      }
      const pcm = new Int16Array(msg.pcm);
      const floats = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) floats[i] = pcm[i] / 32768;
      this._push(this.resampler.process(floats));
      this.ending = false;
    } else if (msg.type === "end") {
      if (this.resampler) this._push(this.resampler.flush());
      this.resampler = null;
      this.ending = true;
      if (this.queued === 0) this._drained();
    } else if (msg.type === "pause") {
      if (!this.paused) this.stats.pauses += 1;
      this.paused = true;
      this._postStats();
    } else if (msg.type === "resume") {
      this.paused = false;
      this._postStats();
    } else if (msg.type === "clear") {
      this.stats.droppedSamples += this.queued;
      this.stats.clears += 1;
      this.queue = [];
      this.queued = 0;
      this.offset = 0;
      this.playing = false;
      this.ending = false;
      this.paused = false;
      this.resampler = null;
      this._postStats();
    }
  }

  _push(samples) {
    if (samples.length === 0) return;
    this.queue.push(samples);
    this.queued += samples.length;
  }

  _drained() {
    this.ending = false;
    this.playing = false;
    this._postStats();
    this.port.postMessage({ type: "drained" });
  }

  _postStats() {
    this.port.postMessage({ type: "stats", ...this.stats, bufferedSamples: this.queued, paused: this.paused, sampleRate });
  }

  process(_inputs, outputs) {
    const channels = outputs[0];
    const out = channels[0];
    if (this.paused) {
      for (const channel of channels) channel.fill(0); // silence, the queue and its position kept
      if (++this.blocks % STATS_EVERY_BLOCKS === 0) this._postStats();
      return true;
    }
    if (!this.playing && this.queued > 0 && (this.queued >= this.prebufferSamples || this.ending)) {
      this.playing = true;
    }
    let written = 0;
    while (this.playing && written < out.length && this.queued > 0) {
      const head = this.queue[0];
      const n = Math.min(out.length - written, head.length - this.offset);
      for (let i = 0; i < n; i++) {
        const s = head[this.offset + i];
        out[written + i] = s;
        this.stats.playedSumSquares += s * s;
      }
      written += n;
      this.offset += n;
      this.queued -= n;
      this.stats.playedSamples += n;
      if (this.offset === head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    for (let c = 1; c < channels.length; c++) channels[c].set(out);
    if (this.playing && this.queued === 0) {
      if (this.ending) this._drained();
      else {
        this.playing = false;
        this.stats.underruns += 1;
      }
    }
    if (++this.blocks % STATS_EVERY_BLOCKS === 0) this._postStats();
    return true;
  }
}

registerProcessor("vp-playback", PlaybackProcessor);
