#!/usr/bin/env bash
# The reference run of issue 7 on one GPU node, in two stages so each fits a 10-minute call:
#
#   scripts/reference_run.sh measure  OUT_ROOT   # full calibrate, two --quick sentinels, regress
#   scripts/reference_run.sh validate OUT_ROOT   # validate 8B and 70B shapes, frontiers, report
#
# Everything lands in OUT_ROOT/<gpu-slug>-<date>/ and ends with a short table on stdout. Runs
# from the source tree (no install needed): PYTHONPATH is set to the repository root.
set -euo pipefail
stage=${1:?usage: reference_run.sh measure|validate OUT_ROOT}
root=${2:?usage: reference_run.sh measure|validate OUT_ROOT}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
slug=$($py -c "import torch,re; print(re.sub(r'[^a-z0-9]+','-',torch.cuda.get_device_name().lower()).strip('-') if torch.cuda.is_available() else 'cpu-smoke')")
# Without a GPU the same chain runs small (a smoke test of the script's wiring, CPU-sized).
if [ "$slug" = cpu-smoke ]; then
  cal_full=(--device cpu --quick); cal_quick=(--device cpu --quick)
  val8=(--model tiny-llama --batch 1,8 --context 128); val70=(--model tiny-llama --layers 2 --batch 1 --context 128)
else
  cal_full=(); cal_quick=(--quick)
  val8=(--model llama-3-8b --batch 1,8,32,128 --context 1024,8192)
  val70=(--model llama-3-70b --layers 24 --batch 1,8,32,128 --context 1024,8192)
fi
run="$root/$slug-$(date -u +%Y%m%d)"
mkdir -p "$run"
ic() { $py -m inferecon "$@"; }
t() { local s=$SECONDS; "$@"; echo "[took $((SECONDS - s)) s] $*" | tee -a "$run/timings.txt"; }
# A calibration interrupted by the call's time limit continues where it stopped.
again() { [ -e "$1/manifest.json" ] && echo --resume; true; }

case "$stage" in
measure)
  t ic calibrate "${cal_full[@]}" --out "$run/calibrate" $(again "$run/calibrate") --no-progress
  t ic calibrate "${cal_quick[@]}" --out "$run/quick-a" $(again "$run/quick-a") --no-progress
  t ic calibrate "${cal_quick[@]}" --out "$run/quick-b" $(again "$run/quick-b") --no-progress
  # Two sentinels of the same node must come out unchanged (exit 0); 1 would be a false alarm.
  set +e; ic regress --baseline "$run/quick-a" --candidate "$run/quick-b" --max-gpus 16; echo "regress exit $?" | tee -a "$run/timings.txt"; set -e
  ;;
validate)
  prof="$run/calibrate/profile.json"
  rm -rf "$run"/validate-* "$run"/frontier-*  # cheap to redo: a rerun starts them afresh
  t ic validate --hardware "$prof" "${val8[@]}" --out "$run/validate-8b" --no-progress
  t ic validate --hardware "$prof" "${val70[@]}" --out "$run/validate-70b" --no-progress
  for m in llama-3-8b llama-3-70b llama-3.1-405b deepseek-v3; do
    if [ "$slug" = cpu-smoke ]; then cmp=(--compare --gpu h100-sxm); else cmp=(--compare); fi
    t ic frontier --model "$m" --hardware "$prof" "${cmp[@]}" --rows 6 --out "$run/frontier-$m"
  done
  for v in 8b 70b; do
    for f in "$run"/validate-$v/validation.*; do [ -e "$f" ] && cp "$f" "$run/calibrate/validation-$v.${f##*.}"; done
  done
  for m in llama-3-8b llama-3-70b llama-3.1-405b deepseek-v3; do
    cp "$run/frontier-$m/frontier.png" "$run/calibrate/frontier-$m.png"
  done
  cp "$run"/quick-b/regress.md "$run/calibrate/" 2>/dev/null || true
  t ic report "$run/calibrate"
  ;;
*) echo "unknown stage $stage" >&2; exit 2 ;;
esac
cat "$run/timings.txt"
