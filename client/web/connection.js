// The WebSocket to /v1/realtime: JSON events and binary audio, with reconnection and backoff.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const MAX_BUFFERED_BYTES = 64 * 1024; // ~2 s of 16 kHz audio: beyond it, new mic frames are dropped

const SESSION_TOKEN_PATH = "/v1/session-token";

// Where the page streams the microphone: its own server. `?server=` may choose another path or
// ws:/wss: on the same host and port, nothing else, so a crafted link cannot send the microphone to
// another host (docs/security.md). `refused` is the ignored value, for the page to say so.
export function serverChoice(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const own = `${scheme}//${location.host}/v1/realtime`;
  const override = new URLSearchParams(location.search).get("server");
  if (!override) return { url: own, refused: null };
  let url;
  try {
    url = new URL(override, own);
  } catch {
    return { url: own, refused: override };
  }
  const sameServer = url.host === location.host && (url.protocol === "ws:" || url.protocol === "wss:");
  return sameServer ? { url: url.href, refused: null } : { url: own, refused: override };
}

export function defaultServerUrl(location) {
  return serverChoice(location).url;
}

export class AuthRequired extends Error {}

// A short-lived signed token for one WebSocket upgrade, from the page's own server. The server
// checks the page's origin and its login cookie first (401: no valid cookie). null: the server has
// no such endpoint (a test stand-in), so the socket opens without one.
export async function fetchSessionToken(fetchImpl = fetch) {
  const options = { method: "POST", credentials: "same-origin", cache: "no-store" };
  const response = await fetchImpl(SESSION_TOKEN_PATH, options);
  if (response.status === 404 || response.status === 405) return null;
  if (response.status === 401 || response.status === 403) throw new AuthRequired(`HTTP ${response.status}`);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = await response.json();
  return body.session_token || null;
}

export function withSessionToken(url, token) {
  if (!token) return url;
  const withToken = new URL(url);
  withToken.searchParams.set("session_token", token);
  return withToken.href;
}

// Backoff before reconnection attempt `attempt` (0-based): doubling, capped, with +-20 % jitter.
export function backoffMs(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class Connection {
  // handlers: onOpen(), onEvent(event), onAudio(ArrayBuffer), onRetry({everOpened, delayMs, attempt, code}),
  // onAuthRequired() (the server wants a login: no retry); sessionToken() gives a token per attempt.
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.wanted = false;
    this.timer = null;
    this.attemptId = 0; // a newer attempt (or close) makes an older one's pending token fetch moot
    this.droppedFrames = 0;
  }

  open() {
    this.wanted = true;
    this._connect();
  }

  close() {
    this.wanted = false;
    this.attemptId += 1;
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

  async _connect() {
    const attemptId = ++this.attemptId;
    const current = () => this.wanted && attemptId === this.attemptId;
    let token = null;
    try {
      token = this.handlers.sessionToken ? await this.handlers.sessionToken() : null;
    } catch (error) {
      if (!current()) return;
      if (error instanceof AuthRequired) {
        this.wanted = false;
        this.handlers.onAuthRequired?.();
      } else {
        this._retry(0); // the server is unreachable, or answered with an error
      }
      return;
    }
    if (!current()) return;
    let ws;
    try {
      ws = new WebSocket(withSessionToken(this.url, token));
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
