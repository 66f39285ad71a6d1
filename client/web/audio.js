// The page's audio graph: microphone -> capture worklet (16 kHz PCM16 frames), and
// reply audio -> playback worklet (jitter buffer) -> speakers.

export const INPUT_RATE_HZ = 16000;
export const FRAME_MS = 20;
const PREBUFFER_MS = 80;

export const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};

// A person-readable reason for a getUserMedia failure.
export function micErrorMessage(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
    return "Microphone permission was denied. Allow the microphone for this page (the icon in the address bar) and press Start again. You can still type.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return "No microphone was found. Plug one in and press Start again. You can still type.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The microphone is in use by another program or could not be opened.";
  }
  if (name === "NoMediaDevices") {
    return "This browser gives no microphone access here: open the page over https or on localhost. You can still type.";
  }
  return `The microphone could not be opened (${name || "unknown error"}).`;
}

export class AudioEngine {
  constructor({ onFrame, onPlaybackStats, onDrained }) {
    this.onFrame = onFrame;
    this.onPlaybackStats = onPlaybackStats;
    this.onDrained = onDrained;
    this.context = null;
    this.playback = null;
    this.capture = null;
    this.stream = null;
    this.source = null;
  }

  // Create the context and both worklets; call from a user gesture (autoplay policies).
  async start() {
    const Context = window.AudioContext || window.webkitAudioContext;
    this.context = new Context({ latencyHint: "interactive" });
    await this.context.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url));
    await this.context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    this.playback = new AudioWorkletNode(this.context, "vp-playback", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { prebufferMs: PREBUFFER_MS },
    });
    this.playback.port.onmessage = (message) => {
      if (message.data.type === "stats") this.onPlaybackStats(message.data);
      else if (message.data.type === "drained") this.onDrained();
    };
    this.playback.connect(this.context.destination);
    if (this.context.state === "suspended") await this.context.resume();
  }

  // Open the microphone; throws an Error whose .name tells the reason (see micErrorMessage).
  async openMicrophone() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const error = new Error("navigator.mediaDevices is unavailable");
      error.name = "NoMediaDevices";
      throw error;
    }
    this.stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    this.source = this.context.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.context, "vp-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { targetRateHz: INPUT_RATE_HZ, frameMs: FRAME_MS },
    });
    this.capture.port.onmessage = (message) => this.onFrame(message.data.pcm, message.data.rms);
    this.source.connect(this.capture);
    return this.stream.getAudioTracks()[0]?.label || "microphone";
  }

  get microphoneOpen() {
    return this.stream !== null;
  }

  play(pcm16, rateHz) {
    this.playback?.port.postMessage({ type: "audio", pcm: pcm16, rateHz }, [pcm16]);
  }

  endOfReply() {
    this.playback?.port.postMessage({ type: "end" });
  }

  // Speech over the reply: hold playback (keeping the buffer) until resume() or clear().
  pause() {
    this.playback?.port.postMessage({ type: "pause" });
  }

  resume() {
    this.playback?.port.postMessage({ type: "resume" });
  }

  clear() {
    this.playback?.port.postMessage({ type: "clear" });
  }

  async stop() {
    this.source?.disconnect();
    this.capture?.port.close();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = this.source = this.capture = null;
    if (this.context) await this.context.close();
    this.context = this.playback = null;
  }
}
