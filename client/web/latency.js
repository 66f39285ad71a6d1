// The latency panel: one waterfall per turn from `turn.metrics` and a running median.

const MAX_TURNS_SHOWN = 8;
const STAGE_LABELS = {
  endpointing: "end of turn",
  stt: "transcribe",
  llm_first_token: "first token",
  first_piece: "first phrase",
  tts: "synthesize",
  send: "send",
};

export function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// Bars of a waterfall: each stage starts where the previous one ended (stages_ms is in order).
export function waterfall(stagesMs) {
  let start = 0;
  return Object.entries(stagesMs).map(([stage, ms]) => {
    const bar = { stage, label: STAGE_LABELS[stage] || stage, startMs: start, ms };
    start += ms;
    return bar;
  });
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export class LatencyPanel {
  constructor(listElement, summaryElement) {
    this.list = listElement;
    this.summary = summaryElement;
    this.turns = [];
  }

  add(metrics) {
    if (!metrics.stages_ms || typeof metrics.voice_to_voice_ms !== "number") return;
    this.turns.push(metrics);
    this.render();
  }

  get medianMs() {
    return median(this.turns.map((turn) => turn.voice_to_voice_ms));
  }

  render() {
    const m = this.medianMs;
    this.summary.textContent =
      m === null ? "No turns yet." : `Median voice-to-voice: ${formatMs(m)} over ${this.turns.length} turn${this.turns.length === 1 ? "" : "s"}`;
    const shown = this.turns.slice(-MAX_TURNS_SHOWN).reverse();
    const scaleMs = Math.max(1, ...shown.map((turn) => turn.voice_to_voice_ms));
    this.list.replaceChildren(...shown.map((turn) => this._turnElement(turn, scaleMs)));
  }

  _turnElement(turn, scaleMs) {
    const item = document.createElement("li");
    item.className = "latency-turn";
    item.dataset.turnId = turn.turn_id || "";
    const title = document.createElement("div");
    title.className = "latency-title";
    const source = turn.input === "text" ? "typed" : "spoken";
    title.textContent = `Turn ${turn.turn_id} (${source}): ${formatMs(turn.voice_to_voice_ms)} to first audio`;
    item.append(title);
    for (const bar of waterfall(turn.stages_ms)) item.append(this._barElement(bar, scaleMs));
    return item;
  }

  _barElement(bar, scaleMs) {
    const row = document.createElement("div");
    row.className = "stage";
    row.dataset.stage = bar.stage;
    const label = document.createElement("span");
    label.className = "stage-label";
    label.textContent = bar.label;
    const track = document.createElement("span");
    track.className = "stage-track";
    const fill = document.createElement("span");
    fill.className = `stage-bar stage-${bar.stage}`;
    fill.style.left = `${(100 * bar.startMs) / scaleMs}%`;
    fill.style.width = `${(100 * bar.ms) / scaleMs}%`;
    fill.setAttribute("role", "img");
    fill.setAttribute("aria-label", `${bar.label}: ${formatMs(bar.ms)}`);
    track.append(fill);
    const value = document.createElement("span");
    value.className = "stage-ms";
    value.textContent = formatMs(bar.ms);
    row.append(label, track, value);
    return row;
  }
}
