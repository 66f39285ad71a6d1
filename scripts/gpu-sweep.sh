#!/usr/bin/env bash
# The concurrency sweep on a GPU machine (issue 14): full replies at 8/24/48/64 sessions, then a
# hang-up storm at 16/32/64, against `serve` started the way docs/scaling.md recommends for a
# 16-core machine with one GPU. Runs in under 8 minutes; every step has its own time limit.
#
#   PYTHONPATH=. OUT=/some/dir scripts/gpu-sweep.sh          (from the repository root)
#
# Environment: OUT (output dir, required), PYTHON (default .venv/bin/python, else python3),
# LEVELS (default 8,24,48,64), STORM_LEVELS (default 16,32,64; none: no storm), STORM_S (default 25),
# ITEMS_PER_SESSION (default 1), BUDGET_S (default 450: steps that would start later are skipped).
# The server's settings below can be overridden by the caller's VP_* variables.
# Writes: $OUT/sweep/report.json (+ report.md, charts, server log; levels.jsonl as each level ends,
# which the summary falls back to when the sweep's time limit stopped it), $OUT/storm.json, $OUT/serve.log,
# $OUT/summary.json and $OUT/summary.md.
set -uo pipefail
: "${OUT:?set OUT to the output directory}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
LEVELS="${LEVELS:-8,24,48,64}"
STORM_LEVELS="${STORM_LEVELS:-16,32,64}"
STORM_S="${STORM_S:-25}"
ITEMS_PER_SESSION="${ITEMS_PER_SESSION:-1}"
BUDGET_S="${BUDGET_S:-450}"
START_S=$SECONDS
mkdir -p "$OUT"
MAX_LEVEL=$(echo "$LEVELS,$STORM_LEVELS" | tr ',' '\n' | sort -n | tail -1)
CORES=$(nproc)

# Recommended for 16 cores + 1 GPU (docs/scaling.md): the LLM in ONE llama.cpp `llama-server` child
# of `serve` with 16 parallel slots (continuous batching) when a binary is here: $LLAMA_SERVER_BIN
# (e.g. one carried from another machine, built there with scripts/build-llama-server.sh --portable
# or --cuda) or scripts/build-llama-server.sh's cache. Without one: 8 llama_cpp.server children (one
# reply each at a time) with 2 threads. Pipeline workers on one port (SO_REUSEPORT), one per 4
# cores, STT on CUDA. The caller's VP_* variables win.
NOTES=""
LLAMA_SERVER_BIN="${LLAMA_SERVER_BIN:-$(scripts/build-llama-server.sh --cuda --check 2>/dev/null \
  || scripts/build-llama-server.sh --check 2>/dev/null || true)}"
if [ -z "${VP_LLM_SERVING:-}" ] && [ -n "$LLAMA_SERVER_BIN" ]; then
  if "$LLAMA_SERVER_BIN" --version > /dev/null 2>&1; then
    export VP_LLM_SERVING=server VP_LLM_SERVER_BIN="$LLAMA_SERVER_BIN"
  else
    NOTES+="$LLAMA_SERVER_BIN does not run here (built for another CPU? use --portable): not used. "
  fi
fi
export VP_LLM_SERVING="${VP_LLM_SERVING:-child}"
export VP_LLM_INSTANCES="${VP_LLM_INSTANCES:-$(( CORES >= 16 ? 8 : (CORES / 2 > 0 ? CORES / 2 : 1) ))}"
export VP_LLM_SERVER_SLOTS="${VP_LLM_SERVER_SLOTS:-16}"
if [ "$VP_LLM_SERVING" = server ]; then  # one process, its slots batched: threads for it, not per slot
  export VP_LLM_N_THREADS="${VP_LLM_N_THREADS:-$(( CORES >= 16 ? 8 : (CORES / 2 > 0 ? CORES / 2 : 1) ))}"
fi
export VP_LLM_N_THREADS="${VP_LLM_N_THREADS:-2}"
export VP_SERVER_WORKERS="${VP_SERVER_WORKERS:-0}"
export VP_STT_DEVICE="${VP_STT_DEVICE:-auto}"
export VP_SERVER_MAX_SESSIONS="${VP_SERVER_MAX_SESSIONS:-$(( MAX_LEVEL + 8 ))}"
export VP_TELEPHONY_SIP_ENABLED="${VP_TELEPHONY_SIP_ENABLED:-false}"
# The child servers need llama-cpp-python's [server] packages (fastapi, uvicorn, sse-starlette,
# starlette-context, pydantic-settings and their deps): without them, measure in-process instead.
if [ "$VP_LLM_SERVING" = child ] && ! "$PYTHON" -c 'import llama_cpp.server.app' 2>/dev/null; then
  export VP_LLM_SERVING=in_process
  NOTES+="llama_cpp.server cannot be imported here (carry fastapi, starlette, pydantic, pydantic-core, annotated-types, typing-inspection, uvicorn, sse-starlette, starlette-context, pydantic-settings, python-dotenv): VP_LLM_SERVING=in_process instead. "
fi
env | grep '^VP_' | sort > "$OUT/settings.env"
# The bench's corpus speaks some items with espeak-ng; without it (the GPU image has none), only
# the Piper items are played.
CORPUS_ARGS=(--items 12)
if ! command -v espeak-ng > /dev/null || [ -n "${PIPER_ONLY:-}" ]; then
  "$PYTHON" - "$ROOT/bench/corpus/v1.json" "$OUT/corpus-piper.json" <<'EOF_PY'
import json, sys
corpus = json.load(open(sys.argv[1]))
corpus["items"] = [item for item in corpus["items"] if item.get("engine") == "piper"]
ids = {item["id"] for item in corpus["items"]}
for key in ("quick_ids", "baseline_ids"):
    corpus[key] = [i for i in corpus.get(key) or [] if i in ids]
json.dump(corpus, open(sys.argv[2], "w"), indent=1)
EOF_PY
  CORPUS_ARGS=(--corpus "$OUT/corpus-piper.json")
  NOTES+="no espeak-ng: the corpus's Piper items only. "
fi
echo "$NOTES" > "$OUT/notes.txt"

left() { echo $(( BUDGET_S - (SECONDS - START_S) )); }
echo "gpu-sweep: $CORES cores; $(tr '\n' ' ' < "$OUT/settings.env")" >&2

# 1. The sweep: the bench starts its own `serve` with the settings above (full replies).
RESERVE_S=60  # for the storm after it
[ "$STORM_LEVELS" = none ] && RESERVE_S=5
timeout $(( $(left) > RESERVE_S ? $(left) - RESERVE_S : 30 )) "$PYTHON" -m voice_pipeline.app.cli bench --levels "$LEVELS" \
  --full-replies "${CORPUS_ARGS[@]}" --items-per-session "$ITEMS_PER_SESSION" --limit-ms 800 \
  --out "$OUT/sweep" > "$OUT/sweep.log" 2>&1
echo "sweep exit $? after $(( SECONDS - START_S )) s" >&2

# 2. The storm: one `serve` of our own, the storm clients against it.
STORM_RC=skipped
if [ "$(left)" -gt 60 ] && [ "$STORM_LEVELS" != none ]; then
  PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$PYTHON" -m voice_pipeline.app.cli serve --host 127.0.0.1 --port "$PORT" > "$OUT/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 300); do
    "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$PORT/ready" 2>/dev/null && break
    kill -0 $SERVE_PID 2>/dev/null || break
    sleep 0.5
  done
  STORM_BUDGET=$(( $(left) - 10 ))
  timeout "$STORM_BUDGET" "$PYTHON" scripts/storm_levels.py --url "ws://127.0.0.1:$PORT/v1/realtime" \
    --levels "$STORM_LEVELS" --seconds "$STORM_S" --out "$OUT/storm.json" > "$OUT/storm.log" 2>&1
  STORM_RC=$?
  kill -TERM $SERVE_PID 2>/dev/null
  for _ in $(seq 40); do kill -0 $SERVE_PID 2>/dev/null || break; sleep 0.5; done
  kill -KILL $SERVE_PID 2>/dev/null
  wait $SERVE_PID 2>/dev/null
fi
echo "storm exit $STORM_RC after $(( SECONDS - START_S )) s" >&2

# 3. The summary.
"$PYTHON" - "$OUT" "$STORM_RC" "$(( SECONDS - START_S ))" <<'EOF'
import json, os, sys
out, storm_rc, wall_s = sys.argv[1], sys.argv[2], int(sys.argv[3])
summary = {"wall_s": wall_s, "cores": os.cpu_count(), "notes": open(os.path.join(out, "notes.txt")).read().strip(),
           "settings": dict(
    line.strip().split("=", 1) for line in open(os.path.join(out, "settings.env")) if "=" in line), "levels": [],
    "storm": None, "storm_exit": storm_rc}
try:
    report = json.load(open(os.path.join(out, "sweep", "report.json")))
    for lv in report["summary"]["concurrency"]["levels"]:
        stages = {k: (v or {}).get("p50") for k, v in lv["stages_ms"].items()}
        summary["levels"].append({"sessions": lv["sessions"], "turns": lv["turns"], "status": lv["status"],
                                  "p50_ms": lv["voice_to_voice_ms"]["p50"], "p95_ms": lv["voice_to_voice_ms"]["p95"],
                                  "stage_p50_ms": stages, "resources": lv.get("resources", {})})
    summary["machine"] = report.get("machine")
except (OSError, KeyError, ValueError) as exc:
    summary["sweep_error"] = f"{type(exc).__name__}: {exc}"
    # A sweep stopped by its time limit wrote no report, but each level it finished is in levels.jsonl
    def pct(values, q):
        values = sorted(v for v in values if v is not None)
        return round(values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))], 1) if values else None
    try:
        for line in open(os.path.join(out, "sweep", "levels.jsonl")):
            lv = json.loads(line)
            samples, status = lv["samples"], {}
            for s in samples:
                status[s["status"]] = status.get(s["status"], 0) + 1
            v2v = [s["voice_to_voice_ms"] for s in samples]
            stages = {k: pct([s["stages_ms"].get(k) for s in samples], 0.5) for k in samples[0]["stages_ms"]} if samples else {}
            summary["levels"].append({"sessions": lv["sessions"], "turns": len(samples), "status": status,
                                      "p50_ms": pct(v2v, 0.5), "p95_ms": pct(v2v, 0.95), "stage_p50_ms": stages,
                                      "resources": lv["resources"], "from": "levels.jsonl"})
    except (OSError, KeyError, ValueError) as exc2:
        summary["levels_error"] = f"{type(exc2).__name__}: {exc2}"
try:
    summary["storm"] = [{k: lv[k] for k in ("sessions", "replies", "completed", "hangups", "errors",
                                             "client_failures", "ready_status_after", "question_after")}
                        for lv in json.load(open(os.path.join(out, "storm.json")))["levels"]]
except (OSError, KeyError, ValueError) as exc:
    summary["storm_error"] = f"{type(exc).__name__}: {exc}"
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
lines = [f"# GPU sweep ({summary['cores']} cores, {wall_s} s)", "", "Settings: " + ", ".join(
    f"{k}={v}" for k, v in summary["settings"].items()), "", summary["notes"], "",
    "| sessions | turns | status | voice-to-voice p50 ms | p95 ms | stage p50s (ms) |", "|---:|---:|---|---:|---:|---|"]
for lv in summary["levels"]:
    lines.append(f"| {lv['sessions']} | {lv['turns']} | {lv['status']} | {lv['p50_ms']} | {lv['p95_ms']} | "
                 + ", ".join(f"{k} {v}" for k, v in lv["stage_p50_ms"].items()) + " |")
lines += ["", "| storm sessions | replies | completed | hang-ups | errors | /ready after | question after |",
          "|---:|---:|---:|---:|---|---|---|"]
for lv in summary["storm"] or []:
    lines.append(f"| {lv['sessions']} | {lv['replies']} | {lv['completed']} | {lv['hangups']} | {lv['errors']} | "
                 f"{lv['ready_status_after']} | {lv['question_after']} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
