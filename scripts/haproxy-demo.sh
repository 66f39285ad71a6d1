#!/usr/bin/env bash
# HAProxy + N pipeline workers + one shared llama.cpp server, all on loopback (docs/scaling.md).
#
#   scripts/haproxy-demo.sh [--port 8765] [--workers 2] [--llm server|child] [--llm-slots 1] [--dir DIR]
#
# Starts the shared LLM (python -m voice_pipeline.engines.llama_server: with --llm server, the
# default when scripts/build-llama-server.sh has built it, one llama.cpp llama-server with
# --llm-slots parallel slots; with --llm child, one llama_cpp.server process per slot), the workers
# (`voice-pipeline serve --no-supervise`, each on its own port, told the LLM's URL through
# VP_LLM_SERVING=url / VP_LLM_URL), writes DIR/haproxy.cfg from deploy/haproxy.cfg.in and runs
# HAProxy in the foreground. DIR/pids lists "name pid port" for every process; DIR/*.log their
# logs. Any VP_* variable of the caller reaches the workers. Ctrl-C or SIGTERM stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT=8765 WORKERS=2 LLM_SLOTS=1 DIR="" LLM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --llm-slots) LLM_SLOTS="$2"; shift 2 ;;
    --llm) LLM="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    *) echo "haproxy-demo: unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
[ -x "$HAPROXY" ] || { echo "haproxy-demo: haproxy not found (scripts/install-system-deps.sh installs it)" >&2; exit 3; }
DIR="${DIR:-$(mktemp -d -t vp-haproxy-XXXXXX)}"
mkdir -p "$DIR"
: > "$DIR/pids"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
stop_all() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 0' INT TERM

# The shared LLM: one llama-server with LLM_SLOTS slots, or llama-cpp-python's server, one process per slot.
if [ -z "$LLM" ]; then
  LLM=child
  PYTHON="$PYTHON" "$ROOT/scripts/build-llama-server.sh" --check > /dev/null 2>&1 && LLM=server
fi
LLM_ARGS=() LLM_URLS=()
for _ in $(seq "$([ "$LLM" = server ] && echo 1 || echo "$LLM_SLOTS")"); do
  p="$(free_port)"; LLM_ARGS+=(--port "$p"); LLM_URLS+=("http://127.0.0.1:$p/v1")
done
VP_LLM_SERVING="$LLM" VP_LLM_SERVER_SLOTS="$LLM_SLOTS" \
  "$PYTHON" -m voice_pipeline.engines.llama_server "${LLM_ARGS[@]}" > "$DIR/llm.log" 2>&1 &
PIDS+=($!); echo "llm $! ${LLM_ARGS[1]}" >> "$DIR/pids"
LLM_URL="$(IFS=,; echo "${LLM_URLS[*]}")"
for url in "${LLM_URLS[@]}"; do
  until "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url/models" 2>/dev/null; do
    kill -0 "${PIDS[0]}" 2>/dev/null || { echo "haproxy-demo: the LLM server exited" >&2; cat "$DIR/llm.log" >&2; exit 1; }
    sleep 0.2
  done
done

# The workers: each a whole pipeline (VAD, STT, TTS) using the shared LLM.
SERVERS=""
for i in $(seq "$WORKERS"); do
  p="$(free_port)"
  VP_LLM_SERVING=url VP_LLM_URL="$LLM_URL" VP_TELEPHONY_SIP_ENABLED=false \
    "$PYTHON" -m voice_pipeline.app.cli serve --no-supervise --host 127.0.0.1 --port "$p" > "$DIR/worker$i.log" 2>&1 &
  PIDS+=($!); echo "worker$i $! $p" >> "$DIR/pids"
  SERVERS+="    server worker$i 127.0.0.1:$p check"$'\n'
done

sed -e "s|@BIND@|127.0.0.1:$PORT|" -e "s|@STATS_SOCKET@|$DIR/haproxy.sock|" "$ROOT/deploy/haproxy.cfg.in" \
  | awk -v servers="$SERVERS" '{ if ($0 == "@SERVERS@") printf "%s", servers; else print }' > "$DIR/haproxy.cfg"
"$HAPROXY" -c -q -f "$DIR/haproxy.cfg"
"$HAPROXY" -db -f "$DIR/haproxy.cfg" > "$DIR/haproxy.log" 2>&1 &
PIDS+=($!); echo "haproxy $! $PORT" >> "$DIR/pids"
echo "haproxy-demo: http://127.0.0.1:$PORT (workers become healthy once their models are loaded; logs in $DIR)" >&2
wait "${PIDS[-1]}"
