#!/usr/bin/env bash
# The served model's benches alone, with its worker's decode GEMMs timed (scripts/vllm_timed_serve.py,
# no profiler): do the GEMMs run at the calibrated speed while vLLM serves, and how far does vLLM's
# own time per token move from one run to the next (issue 21)? No null models, no calibration:
# validate the files it writes with an earlier loop's profile and engine (`inferecon validate`).
#
#   scripts/vllm_timed_bench.sh MODEL_DIR OUT_DIR     (MODEL_DIR: vllm_cpu_loop.py build-model)
#
# As the loop with PIN=1: the worker bound to WORKER_CORE (default 1) by VLLM_CPU_OMP_THREADS_BIND,
# the server started under `taskset -c OTHER_CORES` (default 0; the worker moves itself) and the
# bench client there too; DTYPES (default "bfloat16 float32"), CONCURRENCY (default "1 2 4 8"),
# 2 c prompts of 128 tokens in, 64 out, as the loop. Writes OUT_DIR/<dtype>/vllm-<short>-cC.json,
# OUT_DIR/<dtype>/gemm-worker.json (per layer kind: median, p25, calls of the M = 1 GEMMs, us),
# OUT_DIR/commands.tsv (with load averages) and the logs. The server is stopped whatever happens.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# = 2 ] && [ -f "$1/config.json" ] || { echo "usage: vllm_timed_bench.sh MODEL_DIR OUT_DIR (MODEL_DIR holds config.json)" >&2; exit 2; }
model=$(cd "$1" && pwd); out=$2
venv=${VLLM_VENV:-$here/.venv-vllm}
port=${VLLM_PORT:-18011}
worker_core=${WORKER_CORE:-1}; other_cores=${OTHER_CORES:-0}
mkdir -p "$out/logs" && out=$(cd "$out" && pwd)
export VLLM_TARGET_DEVICE=cpu VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
pgid=""
stop() { [ -n "$pgid" ] && { kill -TERM -- "-$pgid" 2>/dev/null; for _ in $(seq 1 30); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 1; done; kill -KILL -- "-$pgid" 2>/dev/null; }; pgid=""; }
trap stop EXIT
trap 'exit 130' INT TERM
load() { cut -d' ' -f1-3 /proc/loadavg; }
printf 'phase\tstart_utc\tseconds\texit\tloadavg_before\tloadavg_after\tcommand\n' > "$out/commands.tsv"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$out/commands.tsv"; }
for dt in ${DTYPES:-bfloat16 float32}; do
  short=$([ "$dt" = bfloat16 ] && echo bf16 || echo fp32)
  mkdir -p "$out/$short"
  t0=$SECONDS when=$(date -u +%H:%M:%S) before=$(load)
  IC_GEMM_TIMES_DIR=$out/$short/gemm VLLM_CPU_OMP_THREADS_BIND=$worker_core setsid taskset -c "$other_cores" \
    "$venv/bin/python" "$here/scripts/vllm_timed_serve.py" serve "$model" --host 127.0.0.1 --port "$port" --dtype "$dt" \
    --max-model-len 1024 --seed 0 --enforce-eager > "$out/logs/serve-$short.log" 2>&1 &
  pgid=$!
  up=1
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    kill -0 "$pgid" 2>/dev/null && [ $((SECONDS - t0)) -lt 600 ] || { up=0; break; }; sleep 2
  done
  row "serve-$short" "$when" $((SECONDS - t0)) $((1 - up)) "$before" "$(load)" "vllm_timed_serve.py serve $model --dtype $dt"
  [ $up = 1 ] || { echo "server ($dt) not up: $out/logs/serve-$short.log" >&2; stop; exit 1; }
  for c in ${CONCURRENCY:-1 2 4 8}; do
    t0=$SECONDS when=$(date -u +%H:%M:%S) before=$(load)
    timeout 420 taskset -c "$other_cores" "$venv/bin/python" "$here/scripts/vllm_cpu_loop.py" vllm bench serve --backend vllm \
      --host 127.0.0.1 --port "$port" --model "$model" --dataset-name random --random-input-len 128 --random-output-len 64 \
      --num-prompts $((2 * c)) --max-concurrency "$c" --ignore-eos --seed 0 --save-result --result-dir "$out/$short" \
      --result-filename "vllm-$short-c$c.json" > "$out/logs/bench-$short-c$c.log" 2>&1
    row "bench-$short-c$c" "$when" $((SECONDS - t0)) $? "$before" "$(load)" "vllm bench serve --max-concurrency $c --num-prompts $((2 * c))"
  done
  stop
  # the worker's last dump (every 2,000 one-token GEMM calls): the M = 1 calls of the c 1, 2 runs mostly
  f=$(ls "$out/$short"/gemm/gemm-*.json 2>/dev/null | head -1)
  [ -n "$f" ] && mv "$f" "$out/$short/gemm-worker.json" && rmdir "$out/$short/gemm" 2>/dev/null
done
