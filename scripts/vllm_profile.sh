#!/usr/bin/env bash
# Where vLLM's CPU worker spends a decode step (issue 21): the loop's tiny Llama served as the
# loop serves it (eager, PIN=1: the worker alone on WORKER_CORE), with vLLM's torch profiler on
# (--profiler-config: the worker's trace and its key-averages table, shapes recorded; vLLM's own
# scopes VLLM_CUSTOM_SCOPES_FOR_PROFILING=1: preprocess / forward / postprocess / sample /
# bookkeep), and `vllm bench serve --profile` at each concurrency, then a summary per step
# (scripts/vllm_profile_summary.py).
#
#   scripts/vllm_profile.sh OUT_DIR        (DTYPES, CONCURRENCY: default "bfloat16 float32", "1 8";
#                                           MODEL: served (default) or null8, the loop's 8-layer null model)
#
# The profiler records PROFILE_STEPS engine steps (default 24) after skipping PROFILE_DELAY
# (default 12: past the prompts' prefill at concurrency 8, 2 x C prompts of 128 tokens).
# OUT_DIR/trace/<dtype>-c<C>/ holds the raw traces (tens of MB: not for the repository);
# OUT_DIR/<dtype>-c<C>/ the table vLLM wrote, the bench's result and summary.{json,md}.
# The profiler adds its own cost per op, so its step is longer than an unprofiled one: the
# summary reports each op's share and its time, and the step's wall time with the profiler.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ $# -eq 1 ] || { echo "usage: scripts/vllm_profile.sh OUT_DIR" >&2; exit 2; }
venv=${VLLM_VENV:-$here/.venv-vllm}
helper=$here/scripts/vllm_cpu_loop.py
summary=$here/scripts/vllm_profile_summary.py
dtypes=${DTYPES:-"bfloat16 float32"}
concurrency=${CONCURRENCY:-"1 8"}
port=${VLLM_PORT:-18010}
worker_core=${WORKER_CORE:-1}
other_cores=${OTHER_CORES:-0}
delay=${PROFILE_DELAY:-12}
steps=${PROFILE_STEPS:-24}
[ -x "$venv/bin/python" ] || { echo "vllm_profile.sh: no vLLM venv at $venv (run scripts/vllm_cpu_loop.sh once)" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd) || exit 2
mkdir -p "$out/logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/vllm-profile.XXXXXX")
model=$work/tiny-llama-155m
which=${MODEL:-served}
case $which in served|null8) ;; *) echo "vllm_profile.sh: MODEL must be served or null8, not '$which'" >&2; exit 2;; esac
server_pgid=""
log() { echo "[vllm-profile $(date -u +%H:%M:%S)] $*" >&2; }
stop_server() {
  [ -n "$server_pgid" ] || return 0
  kill -TERM -- "-$server_pgid" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 -- "-$server_pgid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$server_pgid" 2>/dev/null
  server_pgid=""
}
trap 'stop_server; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export VLLM_TARGET_DEVICE=cpu VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CUSTOM_SCOPES_FOR_PROFILING=1
printf 'what\tutc\tloadavg\n' > "$out/loadavg.tsv"
mark() { printf '%s\t%s\t%s\n' "$1" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/loadavg.tsv"; }

timeout 600 "$venv/bin/python" "$helper" build-model "$model" > "$out/logs/build-model.log" 2>&1 || { log "build-model failed"; exit 1; }
if [ "$which" = null8 ]; then
  timeout 300 "$venv/bin/python" "$helper" build-null-model "$work/null8" "$model" 8 > "$out/logs/build-null8-model.log" 2>&1 \
    || { log "build-null-model failed"; exit 1; }
  model=$work/null8
fi
for dt in $dtypes; do
  short=$([ "$dt" = bfloat16 ] && echo bf16 || echo fp32)
  for c in $concurrency; do
    tag=$short-c$c trace=$out/trace/$short-c$c
    mkdir -p "$trace" "$out/$tag"
    cfg=$(printf '{"profiler":"torch","torch_profiler_dir":"%s","torch_profiler_record_shapes":true,"torch_profiler_with_stack":false,"torch_profiler_use_gzip":false,"ignore_frontend":true,"delay_iterations":%d,"max_iterations":%d}' "$trace" "$delay" "$steps")
    mark "serve-$tag"
    log "serve $tag (load $(cut -d' ' -f1 /proc/loadavg))"
    setsid env "VLLM_CPU_OMP_THREADS_BIND=$worker_core" "$venv/bin/python" "$helper" vllm serve "$model" --host 127.0.0.1 \
      --port "$port" --dtype "$dt" --max-model-len 1024 --seed 0 --enforce-eager --profiler-config "$cfg" \
      > "$out/logs/serve-$tag.log" 2>&1 &
    server_pgid=$!
    up=0
    for _ in $(seq 1 300); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { up=1; break; }
      kill -0 "$server_pgid" 2>/dev/null || break
      sleep 2
    done
    [ $up = 1 ] || { log "$tag: server not up"; tail -20 "$out/logs/serve-$tag.log" >&2; stop_server; exit 1; }
    wpid=$(grep -ho '(Worker pid=[0-9]*)' "$out/logs/serve-$tag.log" | head -1 | tr -dc 0-9)
    for p in $(pgrep -g "$server_pgid"); do [ "$p" = "$wpid" ] || taskset -a -c -p "$other_cores" "$p" >/dev/null 2>&1; done
    mark "bench-$tag"
    timeout 420 taskset -c "$other_cores" "$venv/bin/python" "$helper" vllm bench serve --backend vllm --host 127.0.0.1 \
      --port "$port" --model "$model" --dataset-name random --random-input-len 128 --random-output-len 64 \
      --num-prompts $((2 * c)) --max-concurrency "$c" --ignore-eos --seed 0 --profile --save-result \
      --result-dir "$out/$tag" --result-filename "bench-$tag.json" > "$out/logs/bench-$tag.log" 2>&1 \
      || log "$tag: bench failed (see logs/bench-$tag.log)"
    # the worker writes its trace and table when the profiler stops: wait for the table
    for _ in $(seq 1 60); do ls "$trace"/*profiler_out*.txt >/dev/null 2>&1 && break; sleep 2; done
    sleep 3
    mark "done-$tag"
    stop_server
    cp "$trace"/*profiler_out*.txt "$out/$tag/" 2>/dev/null
    "$venv/bin/python" "$summary" "$trace" "$out/$tag" > "$out/logs/summary-$tag.log" 2>&1 \
      || { log "$tag: summary failed"; tail -5 "$out/logs/summary-$tag.log" >&2; }
  done
done
log "done: $out"
