#!/usr/bin/env bash
# Issue 14's GPU measurement in one call on the lent machine (../shared/gpu/README.md), after
# `source .gpu/unpack.sh`, the LLM in a CUDA llama-server:
#   1. the TTS alone (scripts/tts_bench.py): Piper on CUDA one sentence per call, batched
#      (tts.batch), batched in one process, and on the cores; with LLM_PROBE=1 also the LLM alone
#      (scripts/llm_slots_bench.py);
#   2. the concurrency sweeps (SWEEPS; by default the silence end of turn, then the default one),
#      the first followed by a hang-up storm; with py-spy on the PATH, each worker's Python stacks
#      sampled for 15 s once the first sweep's last level starts.
#
#   LLAMA_SERVER_BIN=<CUDA build> OUT=<dir> scripts/gpu-measure.sh
#
# The binary: scripts/build-llama-server.sh --cuda --cuda-arch 90 --portable, built on any machine
# with nvcc and carried over (EXTRA= in bundle.sh), with the llama-export-lora the script builds
# beside it (a CPU build's serves too: the merge runs on the CPU), so that `serve` merges the
# voice LoRA into the model (llm.server_merge_lora; without it the adapter is applied at run time,
# logged). Carry pipecat-ai too (GPU_WHEELS in bundle.sh): without it there is no Smart Turn and
# the end of turn falls back to the text model alone. With
# onnxruntime-gpu the bundle needs 11 chunks or more, beyond bundle.sh's one-digit names: re-split
# its .gpu/bundle.tar with `split -b 56M -d -a 2` (unpack.sh reads chunk.* in order either way).
#
# Environment: OUT (required), LEVELS (default 16,32,64), STORM_LEVELS (default 64),
# ITEMS_PER_SESSION (default 1), SLOTS (llama-server's parallel slots, default 64), WORKERS
# (pipeline workers, default 8: better than 4 on the H200), SWEEPS (";"-separated "name SETTING=...",
# default "silence VP_VAD_END_OF_TURN=silence;default": the goal's figure with the silence end of
# turn, then the product's default end of turn), SECOND_LEVELS (the later sweeps' levels, default
# LEVELS), FIRST_BUDGET_S / SECOND_BUDGET_S (each sweep's time limit, 240 / 170), REPEAT_BEST (see
# there), TTS_PROBE (0: none), TTS_VARIANTS (";"-separated, see below), TTS_LEVELS (default 8,64),
# TTS_ROUNDS (default 2), LLM_PROBE (1: run it), LLM_VARIANTS and LLM_LEVELS (see there),
# VAD_SECONDS (set: also scripts/vad_cpu.py, CPU and CUDA).
# Writes $OUT/results.tgz (every sweep's report, levels.jsonl and logs, nvidia-smi samples, the
# probes' JSON, py-spy's stacks), $OUT/sweeps.md (each sweep's summary), $OUT/env.txt,
# $OUT/tts_probe.txt (and $OUT/llm_slots.txt, $OUT/vad_cpu.txt): few files, as the device tool
# returns only a few. Piper, the VAD and Smart Turn run on the CPU unless a sweep's settings say
# otherwise (VP_TTS_DEVICE=cuda, VP_VAD_DEVICE=cuda). Each sweep has its own time limit; one
# stopped by it still summarizes the levels it finished.
set -uo pipefail
: "${OUT:?set OUT to the output directory}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="/tmp/site/bin:$PATH"  # py-spy, where .gpu/unpack.sh installs the carried wheels
WORK="$(mktemp -d -t vp-gpu-XXXXXX)"
LEVELS="${LEVELS:-16,32,64}"
export VP_SERVER_WORKERS="${VP_SERVER_WORKERS:-${WORKERS:-8}}"
SECOND_LEVELS="${SECOND_LEVELS:-$LEVELS}"
export ITEMS_PER_SESSION="${ITEMS_PER_SESSION:-1}"
# The LLM wholly on the GPU, one slot per session, few CPU threads (the GPU does the work).
export VP_LLM_SERVING=server VP_LLM_N_GPU_LAYERS="${VP_LLM_N_GPU_LAYERS:-999}"
export VP_LLM_SERVER_SLOTS="${SLOTS:-64}" VP_LLM_N_THREADS="${VP_LLM_N_THREADS:-4}"

# onnxruntime-gpu (the gpu extra, carried) finds cuDNN, cuBLAS and cuFFT in the image's nvidia-* packages
SITE="$(python3 -c 'import site; print(site.getsitepackages()[0])')"
NV_LIBS="$(find "$SITE/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')"
export LD_LIBRARY_PATH="$NV_LIBS${LD_LIBRARY_PATH:-}"
{ date -u; nproc; nvidia-smi -L; "$LLAMA_SERVER_BIN" --version 2>&1 | tail -3; env | grep '^VP_' | sort
  python3 -c 'import onnxruntime as o; from voice_pipeline.engines.smart_turn import smart_turn_onnx as m
print("onnxruntime", o.__version__, o.get_available_providers())
print("smart turn session:", o.InferenceSession(m(), providers=["CUDAExecutionProvider"]).get_providers())'
} > "$OUT/env.txt" 2>&1
# The VAD's CPU per session, its batched model on the CPU and on CUDA (64 sessions, real time)
if [ -n "${VAD_SECONDS:-}" ]; then
  timeout 90 python3 scripts/vad_cpu.py --sessions 64 --seconds "$VAD_SECONDS" --wait-ms 0 --device cpu cuda \
    > "$OUT/vad_cpu.txt" 2>&1
fi
# GPU memory and utilisation every 2 s, the whole run (the bench samples utilisation per level too)
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 \
  > "$WORK/nvidia-smi.csv" 2>&1 &
SMI_PID=$!

# The LLM server alone (LLM_PROBE=1): first token, 20th token and token gaps at LLM_LEVELS at once,
# for each of LLM_VARIANTS (";"-separated "name SETTING=...": by default the voice LoRA applied at
# run time, then merged into the model)
if [ -n "${LLM_PROBE:-}" ]; then
  IFS=';' read -r -a variants <<< "${LLM_VARIANTS:-lora VP_LLM_SERVER_MERGE_LORA=off;merged VP_LLM_SERVER_MERGE_LORA=auto}"
  for variant in "${variants[@]}"; do
    set -- $variant; name=$1; shift
    echo "== $name: $*" >> "$OUT/llm_slots.txt"
    env "$@" timeout 75 python3 scripts/llm_slots_bench.py --levels "${LLM_LEVELS:-1,16,64}" --rounds 2 \
      --out "$WORK/llm_$name.json" >> "$OUT/llm_slots.txt" 2>&1
  done
fi
# The TTS alone (TTS_PROBE, default on): N first pieces at once over the workers' processes. Each
# variant: a name, then settings; PROCS=<n> overrides the process count and SAME=1 speaks one text.
TTS_VARIANTS="${TTS_VARIANTS:-cuda_single VP_TTS_DEVICE=cuda VP_TTS_BATCH=off;cuda_batched VP_TTS_DEVICE=cuda VP_TTS_BATCH=on;cuda_batched_1proc VP_TTS_DEVICE=cuda VP_TTS_BATCH=on PROCS=1;cpu VP_TTS_DEVICE=cpu VP_TTS_BATCH=off}"
if [ "${TTS_PROBE:-1}" != 0 ]; then
  IFS=';' read -r -a variants <<< "$TTS_VARIANTS"
  for variant in "${variants[@]}"; do
    set -- $variant; name=$1; shift
    procs=$VP_SERVER_WORKERS; same=(); settings=()
    for setting in "$@"; do
      case "$setting" in PROCS=*) procs=${setting#PROCS=} ;; SAME=1) same=(--same) ;; *) settings+=("$setting") ;; esac
    done
    echo "== $name: $*" >> "$OUT/tts_probe.txt"
    env "${settings[@]}" timeout 60 python3 scripts/tts_bench.py --levels "${TTS_LEVELS:-8,64}" --processes "$procs" \
      --rounds "${TTS_ROUNDS:-2}" "${same[@]}" --out "$WORK/tts_$name.json" 2>&1 | grep -v Memcpy >> "$OUT/tts_probe.txt"
  done
fi

# The sweeps: each a name, then settings (LEVELS=... among them overrides the levels); the first
# one with LEVELS and the storm, the others with SECOND_LEVELS.
IFS=';' read -r -a sweeps <<< "${SWEEPS:-silence VP_VAD_END_OF_TURN=silence;default}"
FIRST=$(echo "${sweeps[0]}" | cut -d' ' -f1)
# Each worker's stacks (py-spy's collapsed format) during the last level of the first sweep
spy_last_level() {
  local before_last; before_last=$(echo "$LEVELS" | tr ',' '\n' | sort -n | tail -2 | head -1)
  for _ in $(seq 240); do
    grep -q "N=$before_last:" "$WORK/$FIRST/sweep.log" 2>/dev/null && break
    sleep 1
  done
  sleep 5
  for pid in $(pgrep -f -- '--worker'); do
    timeout 25 py-spy record --pid "$pid" --duration 15 --rate 50 --nonblocking --format raw \
      --output "$WORK/pyspy-$pid.txt" > /dev/null 2>&1 &
  done
  wait
}
if command -v py-spy > /dev/null; then spy_last_level & fi

run_sweep() {  # name, first (1: with LEVELS and the storm), then its settings
  local name=$1 first=$2; shift 2
  echo "== $name: $*" >> "$OUT/sweeps.md"
  if [ "$first" = 1 ]; then
    env LEVELS="$LEVELS" STORM_LEVELS="${STORM_LEVELS:-64}" STORM_S="${STORM_S:-20}" BUDGET_S="${FIRST_BUDGET_S:-240}" \
      "$@" OUT="$WORK/$name" scripts/gpu-sweep.sh
  else
    env LEVELS="$SECOND_LEVELS" STORM_LEVELS=none BUDGET_S="${SECOND_BUDGET_S:-170}" "$@" OUT="$WORK/$name" scripts/gpu-sweep.sh
  fi
  cat "$WORK/$name/summary.md" >> "$OUT/sweeps.md" 2>/dev/null
  tar -czf "$OUT/results.tgz" -C "$WORK" .  # after each sweep: what is done comes back if the call is cut
}
for index in "${!sweeps[@]}"; do
  set -- ${sweeps[$index]}
  run_sweep "$1" "$([ "$index" = 0 ] && echo 1 || echo 0)" "${@:2}"
done
# REPEAT_BEST=N: the sweep with the lowest p95 at its last level, N times more. Its first run was
# picked for being low, so the repeats are the figure to pool, not it.
if [ "${REPEAT_BEST:-0}" -gt 0 ]; then
  best=$(python3 - "$WORK" "${sweeps[@]}" <<'EOF_PY'
import json, sys
work, scores = sys.argv[1], []
for entry in sys.argv[2:]:
    try:
        levels = json.load(open(f"{work}/{entry.split()[0]}/summary.json"))["levels"]
        scores.append((levels[-1]["p95_ms"], entry))
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        pass
print(min(scores)[1] if scores else "")
EOF_PY
)
  if [ -n "$best" ]; then
    set -- $best
    for round in $(seq "$REPEAT_BEST"); do run_sweep "$1_r$round" 0 "${@:2}"; done
  fi
fi
kill "$SMI_PID" 2>/dev/null
tar -czf "$OUT/results.tgz" -C "$WORK" .
