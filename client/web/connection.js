// The WebSocket to /v1/realtime: JSON events and binary audio, with reconnection and backoff.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const MAX_BUFFERED_BYTES = 64 * 1024; // ~2 s of 16 kHz audio: beyond it, new mic frames are dropped

export function defaultServerUrl(location) {
  const override = new URLSearchParams(location.search).get("server");
  if (override) return override;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/realtime`;
}

// Backoff before reconnection attempt `attempt` (0-based): doubling, capped, with +-20 % jitter.
export function backoffMs(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class Connection {
  // handlers: onOpen(), onEvent(event), onAudio(ArrayBuffer), onRetry({everOpened, delayMs, attempt, code})
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.wanted = false;
    this.timer = null;
    this.droppedFrames = 0;
  }

  open() {
    this.wanted = true;
    this._connect();
  }

  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "client closed");
    this.ws = null;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // A session was created: the link works, so the next loss starts the backoff afresh.
  markHealthy() {
    this.attempt = 0;
  }

  send(event) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  sendAudio(buffer) {
    if (!this.isOpen) return false;
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.droppedFrames += 1;
      return false;
    }
    this.ws.send(buffer);
    return true;
  }

  _connect() {
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this._retry(0);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.everOpened = true;
      this.handlers.onOpen();
    };
    ws.onmessage = (message) => {
      if (typeof message.data === "string") {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        this.handlers.onEvent(event);
      } else {
        this.handlers.onAudio(message.data);
      }
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.wanted) this._retry(close.code);
    };
  }

  _retry(code) {
    const delayMs = backoffMs(this.attempt);
    this.attempt += 1;
    this.handlers.onRetry({ everOpened: this.everOpened, delayMs, attempt: this.attempt, code });
    this.timer = setTimeout(() => this.wanted && this._connect(), delayMs);
  }
}
