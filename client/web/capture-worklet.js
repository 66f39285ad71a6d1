// AudioWorklet processor: microphone samples at the context's rate -> 16 kHz PCM16 frames of 20 ms.
//
// Each full frame goes to the main thread as a transferred ArrayBuffer, with its RMS level for
// the meter. The main thread only forwards frames to the WebSocket.

import { StreamingResampler } from "./resampler.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRateHz = 16000, frameMs = 20 } = options.processorOptions || {};
    this.resampler = new StreamingResampler(sampleRate, targetRateHz);
    this.frameSamples = Math.round((targetRateHz * frameMs) / 1000);
    this._newFrame();
  }

  _newFrame() {
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    this.sumSquares = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const samples = this.resampler.process(channel);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.sumSquares += s * s;
      if (this.fill === this.frameSamples) {
        const rms = Math.sqrt(this.sumSquares / this.frameSamples);
        this.port.postMessage({ pcm: this.frame.buffer, rms }, [this.frame.buffer]);
        this._newFrame();
      }
    }
    return true;
  }
}

registerProcessor("vp-capture", CaptureProcessor);
