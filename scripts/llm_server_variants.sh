#!/usr/bin/env bash
# Which llama-server setting sets the token pace at many replies at once (issue "Serve many
# conversations"): one llama-server per variant, started with the argv `serve` uses
# (engines/llama_server_cmd.py) plus the variant's flags, then scripts/llm_slots_bench.py against
# it, and the server's CPU seconds per thread over the probe.
#
#   LLAMA_SERVER_BIN=<binary> OUT=<dir> scripts/llm_server_variants.sh
#
# Environment: SLOTS (default 64), LEVELS (default 1,64), ROUNDS (default 2), VARIANTS (names from
# the list below). VP_LLM_* as for serve (n_gpu_layers, n_threads). `base` is serve's argv as it is
# now, with the unified KV cache and no host prompt cache (its defaults since the H200 run these
# variants measured, docs/benchmarks.md); `before` gives the earlier behaviour back (llama-server's
# own defaults: a KV cache per slot, 8 GiB of host prompt cache; a later flag wins over serve's).
set -uo pipefail
: "${OUT:?set OUT}" "${LLAMA_SERVER_BIN:?set LLAMA_SERVER_BIN}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
SLOTS="${SLOTS:-64}" LEVELS="${LEVELS:-1,64}" ROUNDS="${ROUNDS:-2}"
declare -A FLAGS=([base]="" [no_lora]="NO_LORA" [greedy]="" [backend_sampling]="-bs" [flash_attn]="-fa on"
                  [kv_unified]="-kvu" [poll0]="--poll 0" [kvu_fa]="-kvu -fa on" [kvu_greedy]="-kvu"
                  [kvu_ub2048]="-kvu -ub 2048" [kvu_t1]="-kvu -t 1 -tb 1" [kvu_fa_ub2048]="-kvu -fa on -ub 2048"
                  [no_kvu]="-no-kvu" [kvu_cram0]="-kvu --cache-ram 0" [no_kvu_cram0]="-no-kvu --cache-ram 0"
                  [before]="-no-kvu --cache-ram 8192")
declare -A TEMPERATURE=([greedy]=0 [kvu_greedy]=0)
VARIANTS="${VARIANTS:-base before no_kvu greedy backend_sampling no_lora flash_attn poll0}"
for name in $VARIANTS; do
  port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mapfile -t argv < <(VP_LLM_SERVER_SLOTS=$SLOTS "$PYTHON" -c '
import sys
from voice_pipeline.app.settings import Settings
from voice_pipeline.engines.llama_server import MODEL_ALIAS
from voice_pipeline.engines.llama_server_cmd import server_argv
argv = server_argv(Settings.load().llm, sys.argv[1], "127.0.0.1", int(sys.argv[2]), MODEL_ALIAS)
if sys.argv[3] == "NO_LORA" and "--lora" in argv:
    i = argv.index("--lora"); del argv[i:i + 2]
print("\n".join(argv))' "$LLAMA_SERVER_BIN" "$port" "${FLAGS[$name]}")
  extra=(); [ "${FLAGS[$name]}" != NO_LORA ] && read -r -a extra <<< "${FLAGS[$name]}"
  "${argv[@]}" "${extra[@]}" > "$OUT/$name.server.log" 2>&1 &
  pid=$!
  for _ in $(seq 120); do
    "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$port/health" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
  done
  VP_LLM_SERVING=url VP_LLM_URL="http://127.0.0.1:$port/v1" VP_LLM_TEMPERATURE="${TEMPERATURE[$name]:-0.3}" \
    timeout 90 "$PYTHON" scripts/llm_slots_bench.py --levels "$LEVELS" --rounds "$ROUNDS" --out "$OUT/$name.json" \
    > "$OUT/$name.txt" 2>&1
  { echo "== $name: ${FLAGS[$name]} (temperature ${TEMPERATURE[$name]:-0.3})"; grep " at once" "$OUT/$name.txt"
    echo "server CPU s per thread (busiest 4):" $(for t in /proc/$pid/task/*; do
      awk '{printf "%.1f\n", ($14 + $15) / 100}' "$t/stat"; done | sort -nr | head -4); } | tee -a "$OUT/variants.txt"
  kill $pid; wait $pid 2>/dev/null
done
