// A streaming windowed-sinc resampler for mono Float32 audio, shared by both AudioWorklets.
//
// Each output sample is a Hann-windowed sinc interpolation of the input around its position.
// The cutoff is below the lower of the two Nyquist rates, so downsampling (48 kHz mic -> 16 kHz)
// is anti-aliased and upsampling (22.05 kHz reply -> 48 kHz) is smooth. Input arrives in chunks of
// any size; the tail the kernel still needs is kept between calls. Latency: `halfTaps` input samples.

const DEFAULT_HALF_TAPS = 8;

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

export class StreamingResampler {
  constructor(fromHz, toHz, halfTaps = DEFAULT_HALF_TAPS) {
    this.fromHz = fromHz;
    this.toHz = toHz;
    this.step = fromHz / toHz; // input samples per output sample
    const ratio = Math.min(1, toHz / fromHz);
    this.cutoff = 0.94 * ratio; // fraction of the input's Nyquist rate
    this.half = Math.ceil(halfTaps / ratio); // a wider kernel when the cutoff is lower
    this.history = new Float32Array(0);
    this.pos = 0; // position of the next output sample, in `history` coordinates
  }

  // Resample one chunk; returns the output samples that are complete so far.
  process(input) {
    if (this.fromHz === this.toHz) return Float32Array.from(input);
    const buf = new Float32Array(this.history.length + input.length);
    buf.set(this.history, 0);
    buf.set(input, this.history.length);
    const count = Math.max(0, Math.ceil((buf.length - this.half - this.pos) / this.step));
    const out = new Float32Array(count);
    let p = this.pos;
    for (let i = 0; i < count; i++, p += this.step) out[i] = this._at(buf, p);
    const drop = Math.max(0, Math.floor(p) - this.half);
    this.pos = p - drop;
    this.history = buf.slice(drop);
    return out;
  }

  // Push zeros through so that the last real samples come out (end of a reply).
  flush() {
    return this.process(new Float32Array(2 * this.half));
  }

  _at(buf, p) {
    const centre = Math.floor(p);
    const first = Math.max(0, centre - this.half + 1);
    const last = Math.min(buf.length - 1, centre + this.half);
    let acc = 0;
    for (let k = first; k <= last; k++) {
      const x = p - k;
      const window = 0.5 * (1 + Math.cos((Math.PI * x) / (this.half + 1)));
      acc += buf[k] * this.cutoff * sinc(this.cutoff * x) * window;
    }
    return acc;
  }
}
