// The browser voice client: wires the audio graph, the WebSocket and the page together.

import { AudioEngine, INPUT_RATE_HZ, micErrorMessage } from "./audio.js";
import { Connection, fetchSessionToken, serverChoice } from "./connection.js";
import { LatencyPanel } from "./latency.js";
import { Transcript } from "./transcript.js";

const MAX_EVENTS_KEPT = 500;
const PTT_TAIL_MS = 150; // keep sending this long after the talk key is released, then commit
const $ = (id) => document.getElementById(id);

const ui = {
  start: $("start"), stop: $("stop"), reset: $("reset"), talk: $("talk"), state: $("state"),
  link: $("link"), message: $("message"), meter: $("meter"), textForm: $("text-form"), text: $("text"),
  modes: document.querySelectorAll('input[name="mode"]'),
};
const transcript = new Transcript($("transcript"));
const latency = new LatencyPanel($("latency-list"), $("latency-summary"));

// A test hook: what the page received and what its audio graph actually played.
const vp = (window.__vp = {
  events: [],
  state: "idle",
  stateHistory: [],
  sampleRateHz: null,
  counters: { framesSent: 0, framesDropped: 0, audioChunksReceived: 0, playedSamples: 0, playedSumSquares: 0, underruns: 0, clears: 0, pauses: 0, droppedSamples: 0, reconnects: 0 },
  playbackPaused: false,
  playedRms() {
    return vp.counters.playedSamples ? Math.sqrt(vp.counters.playedSumSquares / vp.counters.playedSamples) : 0;
  },
  latency,
});

const app = {
  mode: "handsfree", sessionReady: false, talking: false, replyRateHz: 22050,
  response: null, pendingTyped: [], lastServerError: null,
};

const audio = new AudioEngine({
  onFrame: sendFrame,
  onPlaybackStats: (stats) => {
    Object.assign(vp.counters, {
      playedSamples: stats.playedSamples, playedSumSquares: stats.playedSumSquares,
      underruns: stats.underruns, clears: stats.clears, pauses: stats.pauses, droppedSamples: stats.droppedSamples,
    });
    vp.playbackPaused = stats.paused;
  },
  onDrained: () => {
    if (vp.state === "speaking") setState("listening");
  },
});

const server = serverChoice(window.location);
const connection = new Connection(server.url, {
  sessionToken: () => fetchSessionToken(),
  onAuthRequired: () => {
    setLink("unauthorized");
    setState("offline");
    showMessage("This server needs an access token: open the link with ?token=… that its operator gave you, "
      + "then press Start again.");
  },
  onOpen: () => {
    setLink("connected");
    connection.send({ type: "session.start", session: sessionSettings() });
  },
  onEvent: handleEvent,
  onAudio: (buffer) => {
    vp.counters.audioChunksReceived += 1;
    audio.play(buffer, app.replyRateHz);
  },
  onRetry: ({ everOpened, delayMs, attempt }) => {
    app.sessionReady = false;
    vp.counters.reconnects = attempt;
    audio.clear();
    setState("offline");
    const seconds = (delayMs / 1000).toFixed(1);
    const refused = app.lastServerError ? ` The server said: ${app.lastServerError}.` : "";
    app.lastServerError = null;
    setLink(everOpened ? "reconnecting" : "unreachable");
    showMessage(
      everOpened
        ? `Connection lost.${refused} Reconnecting in ${seconds} s (attempt ${attempt}).`
        : `The server at ${connection.url} is unreachable.${refused} Retrying in ${seconds} s (attempt ${attempt}).`,
      "warning",
    );
  },
});

function sessionSettings() {
  return {
    input_audio_format: { encoding: "pcm16", sample_rate: INPUT_RATE_HZ },
    turn_detection: app.mode === "handsfree" ? { type: "server_vad" } : { type: "none" },
  };
}

function setState(state) {
  if (state !== vp.state) vp.stateHistory.push(state);
  vp.state = state;
  const labels = { idle: "Not started", offline: "Offline", listening: "Listening", hearing: "Listening (hearing you)",
    thinking: "Thinking", speaking: "Speaking", ready: "Ready (type a message)" };
  ui.state.dataset.state = state;
  ui.state.textContent = labels[state] || state;
}

function setLink(link) {
  ui.link.dataset.link = link;
  ui.link.textContent = { connected: "Connected", reconnecting: "Reconnecting", unreachable: "Unreachable",
    unauthorized: "Not authorized", closed: "Disconnected" }[link];
}

function showMessage(text, kind = "error") {
  ui.message.textContent = text;
  ui.message.dataset.kind = kind;
  ui.message.hidden = !text;
}

function idleState() {
  return audio.microphoneOpen ? "listening" : "ready";
}

function sendFrame(pcm, rms) {
  ui.meter.value = Math.min(1, rms * 4);
  if (!app.sessionReady) return;
  if (app.mode === "pushtotalk" && !app.talking) return;
  if (connection.sendAudio(pcm)) vp.counters.framesSent += 1;
  else vp.counters.framesDropped = connection.droppedFrames;
}

function handleEvent(event) {
  vp.events.push(event);
  if (vp.events.length > MAX_EVENTS_KEPT) vp.events.shift();
  const handler = HANDLERS[event.type];
  if (handler) handler(event);
}

const HANDLERS = {
  "session.created": (event) => {
    app.sessionReady = true;
    app.replyRateHz = event.session.output_audio_format.sample_rate;
    connection.markHealthy();
    if (vp.counters.reconnects > 0) transcript.note("Reconnected.");
    if (ui.message.dataset.kind === "warning") showMessage(""); // a microphone error stays
    setState(idleState());
  },
  "session.updated": (event) => {
    app.replyRateHz = event.session.output_audio_format.sample_rate;
  },
  "input_audio_buffer.speech_started": () => setState("hearing"),
  "input_audio_buffer.committed": () => setState("thinking"),
  "conversation.item.input_audio_transcription.partial": (event) => transcript.partial(event.turn_id, event.transcript),
  "conversation.item.input_audio_transcription.completed": (event) => transcript.final(event.turn_id, event.transcript),
  "response.created": (event) => {
    app.response = { id: event.response_id, turnId: event.turn_id, audio: false };
    const typed = app.pendingTyped.shift();
    if (typed && !transcript.userByTurn.has(event.turn_id)) transcript.adoptTyped(typed, event.turn_id);
    setState("thinking");
  },
  "response.text.delta": (event) => transcript.assistantDelta(event.response_id, app.response?.turnId, event.delta),
  "output_audio_buffer.started": (event) => {
    app.replyRateHz = event.sample_rate;
    if (app.response) app.response.audio = true;
    setState("speaking");
  },
  "output_audio_buffer.stopped": () => audio.endOfReply(),
  // Speech over the reply: stop playing at once and keep the buffer; the server then resumes it
  // (a backchannel: go on from where it stopped) or clears it (a barge-in: drop it).
  "output_audio_buffer.paused": () => audio.pause(),
  "output_audio_buffer.resumed": () => {
    audio.resume();
    if (app.response?.audio) setState("speaking"); // the speech over it was only a backchannel
  },
  "output_audio_buffer.cleared": () => {
    audio.clear();
    if (vp.state === "speaking") setState(idleState());
  },
  "response.done": (event) => {
    audio.resume(); // never left paused once the reply is over (the server resumes or clears first)
    transcript.assistantDone(event.response_id, app.response?.turnId, event.status, event.text, event.played_text);
    if (event.status === "failed") showMessage(`The reply failed${event.reason ? `: ${event.reason}` : ""}.`);
    if (event.status !== "completed" || !app.response?.audio) setState(idleState());
    app.response = null;
  },
  "turn.metrics": (event) => latency.add(event),
  "conversation.reset.done": () => transcript.note("New conversation: the assistant forgot the earlier turns."),
  error: (event) => {
    const { code, message, recoverable } = event.error || {};
    app.lastServerError = `${message} (${code})`;
    showMessage(`Server error: ${message} (${code})${recoverable === false ? "" : ". The session goes on."}`);
  },
};

async function start() {
  ui.start.disabled = true;
  showMessage("");
  try {
    await audio.start();
    vp.sampleRateHz = audio.context.sampleRate;
  } catch (error) {
    showMessage(`Audio could not start in this browser: ${error.message}`);
    ui.start.disabled = false;
    return;
  }
  try {
    await audio.openMicrophone();
  } catch (error) {
    showMessage(micErrorMessage(error));
  }
  ui.stop.disabled = ui.reset.disabled = false;
  ui.talk.disabled = app.mode !== "pushtotalk" || !audio.microphoneOpen;
  connection.open();
}

async function stop() {
  connection.close();
  app.sessionReady = false;
  await audio.stop();
  setLink("closed");
  setState("idle");
  ui.start.disabled = false;
  ui.stop.disabled = ui.reset.disabled = ui.talk.disabled = true;
  ui.start.focus();
}

function setMode(mode) {
  app.mode = mode;
  ui.talk.disabled = mode !== "pushtotalk" || !audio.microphoneOpen;
  if (app.sessionReady) connection.send({ type: "session.update", session: { turn_detection: sessionSettings().turn_detection } });
}

function pressTalk() {
  if (app.talking || ui.talk.disabled) return;
  if (app.response || vp.state === "speaking") {
    connection.send({ type: "response.cancel" }); // barge-in by the talk key
    audio.clear();
  }
  connection.send({ type: "input_audio_buffer.clear" });
  app.talking = true;
  ui.talk.setAttribute("aria-pressed", "true");
  setState("hearing");
}

function releaseTalk() {
  if (!app.talking) return;
  ui.talk.setAttribute("aria-pressed", "false");
  setTimeout(() => {
    app.talking = false;
    connection.send({ type: "input_audio_buffer.commit" });
    setState("thinking");
  }, PTT_TAIL_MS);
}

function sendText(submit) {
  submit.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !app.sessionReady) return;
  if (app.response) {
    connection.send({ type: "response.cancel" });
    audio.clear();
  }
  connection.send({ type: "conversation.item.create", item: { role: "user", content: [{ type: "input_text", text }] } });
  app.pendingTyped.push(transcript.typed(text));
  ui.text.value = "";
}

function isTalkKey(key) {
  return key.code === "Space" && !key.repeat && app.mode === "pushtotalk" && key.target !== ui.text && !key.target.matches("button, input");
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.reset.addEventListener("click", () => connection.send({ type: "conversation.reset" }));
ui.modes.forEach((radio) => radio.addEventListener("change", () => radio.checked && setMode(radio.value)));
ui.talk.addEventListener("pointerdown", pressTalk);
ui.talk.addEventListener("pointerup", releaseTalk);
ui.talk.addEventListener("pointerleave", releaseTalk);
ui.talk.addEventListener("keydown", (key) => (key.code === "Space" || key.code === "Enter") && !key.repeat && (key.preventDefault(), pressTalk()));
ui.talk.addEventListener("keyup", (key) => (key.code === "Space" || key.code === "Enter") && releaseTalk());
ui.talk.addEventListener("blur", releaseTalk);
document.addEventListener("keydown", (key) => isTalkKey(key) && (key.preventDefault(), pressTalk()));
document.addEventListener("keyup", (key) => key.code === "Space" && app.talking && key.target !== ui.talk && releaseTalk());
ui.textForm.addEventListener("submit", sendText);
setState("idle");
setLink("closed");
if (server.refused) {
  showMessage(`Ignored ?server=${server.refused}: this page streams the microphone only to the server it `
    + `came from (${window.location.host}).`, "warning");
}
