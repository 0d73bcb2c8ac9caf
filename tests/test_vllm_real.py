"""Real vLLM result files (tests/fixtures/engines/vllm_real/: written by vLLM's CPU build in a
run of scripts/vllm_cpu_loop.sh, see the README there) still read, and still predict as they
did when they were committed.

Where the expected values come from (none is the code under test restated):
- measured ms per output token: vLLM's own `median_tpot_ms` field, read here with `json`;
- the run's shape (concurrency, prompts, lengths): the bench command in the README, and the
  same fields of vLLM's JSON;
- predicted ms per output token: the table `inferecon validate --engine-results` wrote at
  the time (engine_validation-<dtype>.csv, committed beside the files). A change of the cost
  model moves these on purpose; the test then names every run that moved and by how much, so
  the table is regenerated deliberately (the README's command), never silently.
- the model's parameter count: a hand count of the tiny Llama's shapes (below).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from inferecon.core.errors import UserError

REAL = Path(__file__).parent / "fixtures" / "engines" / "vllm_real"
DTYPES = {"bf16": (16, 16), "fp32": (32, 32)}  # (weight bits, KV bits) vLLM ran with
CONCURRENCY = (1, 2, 4, 8)
# A prediction may move this much (relative) before the committed table counts as stale:
# float summation order and numpy versions move the 4th digit, a model change moves the 2nd.
PREDICTED_TOLERANCE = 0.01


def _files(dtype: str) -> list[Path]:
    return sorted((REAL / dtype).glob("*.json"))


def _committed_table(dtype: str) -> dict[str, dict]:
    with open(REAL / f"engine_validation-{dtype}.csv", newline="") as f:
        return {Path(r["source"]).name: r for r in csv.DictReader(f)}


def _cases(dtype: str):
    from inferecon.calibration.engine_fit import load_cases

    wb, kb = DTYPES[dtype]
    return load_cases([str(p) for p in _files(dtype)], model=str(REAL / "model"),
                      hardware_path=str(REAL / "profile.json"), tp=1, weight_bits=wb, kv_bits=kb)


def test_every_real_file_is_there():
    for dtype in DTYPES:
        names = sorted(p.name for p in _files(dtype))
        assert names == sorted(f"vllm-{dtype}-c{c}.json" for c in CONCURRENCY), (dtype, names)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_reader_takes_what_vllm_wrote(dtype):
    from inferecon.ingest.engine_results import read_engine_results

    for path in _files(dtype):
        raw = json.loads(path.read_text())
        runs = read_engine_results(path)
        assert len(runs) == 1, path
        run = runs[0]
        assert run.engine == "vllm"
        # The bench command ran --max-concurrency c with 2 c prompts of 128 in, 64 out.
        c = int(path.stem.rsplit("-c", 1)[1])
        assert run.concurrency == c == raw["max_concurrency"]
        assert raw["num_prompts"] == 2 * c and raw["completed"] == 2 * c
        assert run.input_len == 128 and run.output_len == 64
        # The reader takes vLLM's median TPOT (the mean is pulled by the first, prefill-laden step).
        assert run.tpot_metric == "median_tpot_ms"
        assert run.tpot_ms == pytest.approx(raw["median_tpot_ms"], rel=1e-12), path.name


def test_model_folder_is_a_model():
    from inferecon.model.catalog import resolve_model

    spec = resolve_model(str(REAL / "model"))  # a folder holding config.json
    # Hand count without norms (inferecon leaves them out): per layer q 1024x1024 + k, v
    # 2 x 256x1024 + o 1024x1024 = 2,621,440 and MLP 3 x 1024x4096 = 12,582,912, so
    # 15,204,352 x 8 layers = 121,634,816; embeddings and lm head 2 x 16384x1024 = 33,554,432.
    assert spec.total_params == 155_189_248
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.n_kv_heads, spec.d_ff) == (8, 1024, 8, 2, 4096)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_predictions_match_the_committed_table(dtype):
    from inferecon.calibration.engine_fit import score_engine_runs

    table = _committed_table(dtype)
    rows = score_engine_runs(_cases(dtype))
    assert sorted(Path(r["source"]).name for r in rows) == sorted(table)
    moved = []
    for r in rows:
        was = table[Path(r["source"]).name]
        assert r["measured_ms"] == pytest.approx(float(was["measured_ms"]), rel=1e-9)
        then, now = float(was["predicted_ms"]), r["predicted_ms"]
        if abs(now - then) > PREDICTED_TOLERANCE * then:
            moved.append(f"{Path(r['source']).name}: predicted {then:.3f} ms then, {now:.3f} ms now "
                         f"({100 * (now - then) / then:+.1f}%)")
    assert not moved, (f"{dtype}: the model's predictions of the real vLLM runs moved more than "
                       f"{100 * PREDICTED_TOLERANCE:g}% since the table was committed (regenerate "
                       f"tests/fixtures/engines/vllm_real/engine_validation-{dtype}.csv with the README's "
                       "command if the change is meant):\n" + "\n".join(moved))


def test_fp32_runs_need_a_cpu_profile():
    from inferecon.calibration.engine_fit import load_cases

    with pytest.raises(UserError, match="32-bit weights or KV cache are CPU runs"):
        load_cases([str(_files("fp32")[0])], model=str(REAL / "model"), gpu="h100-sxm", tp=1,
                   weight_bits=32, kv_bits=32)


def test_a_profile_without_uncertainty_gives_no_band():
    """An older CPU profile saved without uncertainty entries is still compared (no interval,
    no coverage), not a TypeError."""
    from inferecon.calibration.engine_fit import load_cases, score_engine_runs

    old = Path(__file__).parent / "fixtures" / "validate" / "cpu_profile.json"
    cases = load_cases([str(p) for p in _files("fp32")], model=str(REAL / "model"), hardware_path=str(old),
                       tp=1, weight_bits=32, kv_bits=32)
    rows = score_engine_runs(cases, draws=20)
    assert len(rows) == 4 and all("covered" not in r for r in rows)
