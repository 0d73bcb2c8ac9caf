"""The CPU calibration's op-level path: interleaved timing under load (harness/timing.py), the
op fits (calibration/fit_ops.py), the profile that carries them (calibration/build.py) and
how model/ops.py prices a CPU profile with them. Fast: fake clocks and synthetic tables.

Expected values come from hand calculations stated beside each assertion, or from the
parameters a synthetic table was generated with (a solver must recover what made the data)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from inferecon.harness.timing import InterleavedConfig, measure_interleaved, summarise_blocks


class _FakeCpu:
    """A clock that advances only when a fake op runs; some calls carry a 5 ms time slice."""

    def __init__(self):
        self.t_ns = 0

    def timer(self):
        return self.t_ns

    def op(self, us: float, slice_on_calls=()):
        calls = {"n": 0}

        def fn():
            calls["n"] += 1
            self.t_ns += int(us * 1e3) + (5_000_000 if calls["n"] in slice_on_calls else 0)
        return fn


def test_interleaved_timing_takes_the_blocks_no_slice_hit():
    cpu = _FakeCpu()
    cfg = InterleavedConfig(rounds=12, block_ms=2.0)
    # 100 µs ops: 2 warm-up + 3 sizing calls, then blocks of 2 ms / 100 µs = 20 calls each;
    # block r covers calls 6 + 20 r .. 25 + 20 r. A slice on a block's first call makes that
    # block 100 + 5000 / 20 = 350 µs per call.
    first = [6 + 20 * r for r in range(12)]
    clean = cpu.op(100.0)
    few = cpu.op(100.0, slice_on_calls={first[0], first[4], first[8]})  # 3 of 12 blocks hit
    most = cpu.op(100.0, slice_on_calls=set(first[:10]))  # 10 of 12 hit
    a, b, c = measure_interleaved([clean, few, most], config=cfg, timer=cpu.timer)
    assert a.calls_per_block == b.calls_per_block == c.calls_per_block == 20
    assert len(a.samples_s) == 12
    assert a.time_s == pytest.approx(100e-6) and not a.sliced
    # 9 clean blocks of 12: the 25th percentile is a clean one; the median is too, the mean not.
    assert b.time_s == pytest.approx(100e-6) and not b.sliced
    assert sorted(b.samples_s)[-3:] == pytest.approx([350e-6] * 3)
    # 10 of 12 hit: the low quantile is a hit block, 3.5x the fastest: flagged, not averaged in.
    assert c.time_s == pytest.approx(350e-6) and c.sliced and c.spread == pytest.approx(2.5)


def test_block_summary_and_its_record():
    m = summarise_blocks([1e-4, 1e-4, 1.05e-4, 4e-4], calls_per_block=7)
    # np.quantile([1, 1, 1.05, 4], 0.25) = 1 (linear between the first two): within 15% of the min.
    assert m.time_s == pytest.approx(1e-4) and not m.sliced and m.min_s == pytest.approx(1e-4)
    rec = m.record_fields()
    assert rec["time_us"] == pytest.approx(100.0) and rec["reps"] == 4 and rec["calls_per_block"] == 7
    with pytest.raises(ValueError):
        InterleavedConfig(rounds=1)


# -- the op fits -----------------------------------------------------------------------------------
# A synthetic CPU: GEMMs t0 20 µs + max(2MNK / 0.2 TFLOP/s, bytes / 30 GB/s); decode attention
# floor 6 µs + 1.5 µs per sequence x KV head + max(KV bytes / 10 GB/s, FLOP / 0.05 TFLOP/s).
GEMM = dict(t0=20.0, tflops=0.2, gbps=30.0)
ATTN = dict(floor=6.0, c=1.5, gbps=10.0, tflops=0.05)
OPB = {"bf16": 2.0, "fp32": 4.0}


def _gemm_us(m, n, k, dtype):
    b = OPB[dtype]
    return GEMM["t0"] + max(2 * m * n * k / (GEMM["tflops"] * 1e6), (n * k + m * k + m * n) * b / (GEMM["gbps"] * 1e3))


def _attn_us(b, L, h, hk, d, dtype):
    kv = 2 * b * L * hk * d * OPB[dtype]
    return ATTN["floor"] + ATTN["c"] * b * hk + max(kv / (ATTN["gbps"] * 1e3), 4 * b * L * h * d / (ATTN["tflops"] * 1e6))


def _table(sliced_row=False):
    from inferecon.kernels import cpu_ops

    rows = []
    for p in cpu_ops.planned_params(quick=True):
        if p["op"] == "gemm":
            t = _gemm_us(p["m"], p["n"], p["k"], p["dtype"])
        elif p["op"] == "attention":
            t = _attn_us(p["batch"], p["kv_len"], p["n_heads"], p["n_kv_heads"], p["head_dim"], p["dtype"])
        elif p["op"] == "elementwise":
            t = 50.0 if p["m"] == 1 else 70.0
        else:
            t = 2.5
        rows.append({**p, "case_id": cpu_ops.case_id(p), "time_us": t, "median_us": t * 1.02, "skipped": "",
                     "sliced": False, "kernel": "synthetic"})
    if sliced_row:  # a shape a time slice hit: 30x slower, flagged; the fit must not see it
        bad = dict(rows[0], time_us=rows[0]["time_us"] * 30, sliced=True, case_id="gemm:hit")
        rows.append(bad)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("sliced_row", [False, True])
def test_op_fits_recover_the_synthetic_cpu(sliced_row):
    from inferecon.calibration.fit_ops import fit_cpu_ops

    fits, results, elementwise = fit_cpu_ops(_table(sliced_row), "AMD EPYC", "2.13.0+cpu")
    assert {g.dtype for g in fits.gemm} == {"bf16", "fp32"} and {a.kv_dtype for a in fits.attention} == {"bf16", "fp32"}
    for g in fits.gemm:
        assert (g.t0_us, g.gbps) == pytest.approx((20.0, 30.0), rel=0.02), g
        assert g.quality.folds == 5 and g.quality.heldout_mape < 0.01
    # bf16 at M = 8 does 8 FLOP per weight byte, above F / B = 0.2e12 / 30e9 = 6.7: FLOP-bound,
    # so F is pinned. fp32 does M / 2 <= 4 FLOP per byte: never FLOP-bound, F only bounded
    # below (every row must stay byte-bound).
    bf16 = next(g for g in fits.gemm if g.dtype == "bf16")
    fp32 = next(g for g in fits.gemm if g.dtype == "fp32")
    assert bf16.tflops == pytest.approx(0.2, rel=0.02)
    assert fp32.tflops * 1e12 / (fp32.gbps * 1e9) >= 4.0 * 0.98
    for a in fits.attention:
        assert (a.floor_us, a.per_sequence_head_us, a.gbps) == pytest.approx((6.0, 1.5, 10.0), rel=0.05), a
    assert elementwise == pytest.approx(60.0)  # median of 50, 50, 70, 70 µs (two dtypes x M 1 and 8)
    assert any("2.50 us" in n for n in fits.notes)  # the per-op floor, as measured
    assert any("left out" in n for n in fits.notes) == sliced_row
    assert {r.term for r in results} >= {"op:gemm:bf16", "op:gemm:fp32", "op:attention:bf16"}


def _manifest():
    return {"device": "cpu", "device_name": "AMD EPYC", "metadata": {"torch_version": "2.13.0+cpu",
                                                                     "cpu": {"logical_cores": 2}}}


def test_cpu_profile_carries_op_fits_with_their_uncertainty(tmp_path):
    from inferecon.calibration.build import profile_from_tables
    from inferecon.model.hardware import HardwareProfile

    res = profile_from_tables(_manifest(), {"cpu_ops": _table()}, run_id="r")
    prof = res.profile
    assert prof.op_fits is not None and prof.op_fits.elementwise_per_layer_us == pytest.approx(60.0)
    # The GEMM fit (the term model's) reads the same interleaved GEMMs.
    assert set(prof.compute.gemm_fit) == {"bf16", "fp32"}
    paths = [p for u in prof.uncertainty for p in u["paths"]]
    assert "1/op_fits.gemm.0.gbps" in paths and "op_fits.attention.1.floor_us" in paths
    prof.save(tmp_path / "p.json")
    again = HardwareProfile.load(tmp_path / "p.json")
    assert again.op_fits == prof.op_fits and again.uncertainty == prof.uncertainty


def test_uncertainty_paths_reach_into_lists_of_fits():
    from inferecon.calibration.build import profile_from_tables
    from inferecon.model.uncertain import get_value
    from inferecon.model.uncertainty import apply
    from inferecon.model.uncertain import Uncertain

    prof = profile_from_tables(_manifest(), {"cpu_ops": _table()}, run_id="r").profile
    gbps = prof.op_fits.gemm[0].gbps
    assert get_value(prof, "op_fits.gemm.0.gbps") == gbps
    u = Uncertain("g", ("1/op_fits.gemm.0.gbps",), "lognormal", "t", relative=True, median=1.0, sigma=0.1)
    drawn = apply(prof, [u], [np.array([2.0, 4.0])])
    assert drawn.op_fits.gemm[0].gbps == pytest.approx(np.array([gbps / 2, gbps / 4]))
    assert drawn.op_fits.gemm[1] == prof.op_fits.gemm[1]  # the other fit is untouched


def test_ops_price_fp32_gemms_at_four_bytes_from_the_fp32_fit():
    """The tiny Llama of the vLLM loop, fp32, batch 1, on a CPU profile whose fp32 GEMM fit is
    t0 0, F 1000 TFLOP/s (never binding), B 40 GB/s. Hand count of the weights the GEMMs read:
    8 layers x (q 1024x1024 + k, v 2 x 256x1024 + o 1024x1024 + MLP 3 x 1024x4096) =
    121,634,816 plus the lm head 16384x1024 = 16,777,216: 138,412,032 x 4 bytes = 553.65 MB,
    13.841 ms at 40 GB/s. Activations add M x (K + N) x 4 bytes per GEMM: (1024 + 1536) + (1024 +
    1024) + (1024 + 8192) + (4096 + 1024) = 18,944 per layer x 8 + (1024 + 16384) = 168,960
    elements, 0.676 MB, 0.017 ms."""
    from inferecon.calibration.build import profile_from_tables
    from inferecon.model.catalog import resolve_model
    from inferecon.model.opfits import GemmFit
    from inferecon.model.terms import Layouts, evaluate

    prof = profile_from_tables(_manifest(), {"cpu_ops": _table()}, run_id="r").profile
    flat = GemmFit(dtype="fp32", t0_us=0.0, tflops=1000.0, gbps=40.0, compute_efficiency=None, hbm_efficiency=None)
    prof = dataclasses.replace(prof, uncertainty=[], op_fits=dataclasses.replace(
        prof.op_fits, gemm=[g for g in prof.op_fits.gemm if g.dtype != "fp32"] + [flat]))
    model = resolve_model("tests/fixtures/engines/vllm_real/model").with_precision(32, 32)
    res = evaluate(model, prof, Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=1), 160)
    assert float(res.t_gemm_s[0]) == pytest.approx((553.648128e6 + 0.67584e6) / 40e9, rel=1e-6)
    # Elementwise: the profile's own 60 µs per layer x 8 layers, plus the activation bytes at B.
    assert float(res.t_elementwise_s[0]) >= 8 * 60e-6


# -- prefill: a GEMM that leaves the decode regime above M = 32 -------------------------------------
# Synthetic: the decode law above (GEMM) up to M = 32, then t0 50 µs + max(2MNK / 0.5 TFLOP/s,
# bytes / 30 GB/s) (a wider tile: 2.5x the FLOP rate, a larger intercept); one prompt's causal
# attention 30 µs + 2 L^2 h d / 0.15 TFLOP/s.
PF = dict(t0=50.0, tflops=0.5, gbps=30.0, knee=32)
CTX = dict(floor=30.0, tflops=0.15)


def _prefill_gemm_us(m, n, k, dtype):
    if m <= PF["knee"]:
        return _gemm_us(m, n, k, dtype)
    b = OPB[dtype]
    return PF["t0"] + max(2 * m * n * k / (PF["tflops"] * 1e6), (n * k + m * k + m * n) * b / (PF["gbps"] * 1e3))


def _prefill_table():
    df = _table()
    pre = df["label"].astype(str).str.startswith("prefill_")
    g = pre & (df["op"] == "gemm")
    df.loc[g, "time_us"] = [_prefill_gemm_us(r.m, r.n, r.k, r.dtype) for r in df[g].itertuples()]
    c = df["op"] == "context_attention"
    df.loc[c, "time_us"] = [CTX["floor"] + 2 * r.seq_len ** 2 * r.n_heads * r.head_dim / (CTX["tflops"] * 1e6)
                            for r in df[c].itertuples()]
    return df


def test_prefill_regime_and_context_attention_from_the_prefill_rows():
    from inferecon.calibration.fit_ops import fit_cpu_ops

    fits, results, elementwise = fit_cpu_ops(_prefill_table(), "AMD EPYC", "2.13.0+cpu")
    for g in fits.gemm:
        # The decode fit as without prefill rows (the prefill rows are kept out of it) ...
        assert (g.t0_us, g.gbps) == pytest.approx((20.0, 30.0), rel=0.02), g
        assert g.m_range == (1, 8) and g.decode_t0_us is None
        # model/prefill.py's reading: the prefill regime above the boundary, the one fit at or below it.
        assert g.prefill_params(g.decode_m_max)[:3] == (g.t0_us, g.tflops, g.gbps)
        t0, f, bw, _ = g.prefill_params(512)
        # gate_up at M = 512 by the law: 50 + 2 x 512 x 8192 x 1024 / 0.5e6 = 17,230 µs
        assert t0 + 2 * 512 * 8192 * 1024 / (f * 1e6) == pytest.approx(17230.0, rel=0.03)
        # Decode pricing (model/ops.py: GemmFit.params) does not move at any M.
        assert g.params(128, 1024, 1024) == (g.t0_us, g.tflops, g.gbps)
    bf16 = next(g for g in fits.gemm if g.dtype == "bf16")
    # bf16 at M = 8 is FLOP-bound, so its decode fit knows F: the knee is read off the rows
    # exactly (M = 16 and 32 follow the decode law, 64 up do not), and the regime is the law's.
    # (fp32's decode rows never reach F, so its decode fit cannot price M = 16-32 and the
    # boundary stays at the decode rows' M = 8.)
    assert bf16.decode_m_max == PF["knee"]
    assert (bf16.prefill_t0_us, bf16.prefill_tflops) == pytest.approx((50.0, 0.5), rel=0.03)
    assert bf16.prefill_quality.heldout_mape < 0.01 and bf16.large_quality.heldout_mape > 0.3
    assert {a.kv_dtype for a in fits.context_attention} == {"bf16", "fp32"}
    for a in fits.context_attention:
        assert (a.floor_us, a.tflops) == pytest.approx((30.0, 0.15), rel=0.03), a
        # 128 tokens, 8 heads of 128: 30 + 2 x 128^2 x 8 x 128 / 0.15e6 = 253.7 µs
        assert a.time_us(1, 128, 8, 128) == pytest.approx(253.7, rel=0.02)
    assert elementwise == pytest.approx(60.0)  # the decode M alone: the M = 128 rows are a check
    assert any("at prefill M" in n for n in fits.notes)
    assert {"op:gemm-prefill:bf16", "op:context_attention:fp32"} <= {r.term for r in results}


def test_cases_are_interleaved_in_groups_that_fit_the_memory_budget():
    from inferecon.kernels import cpu_ops

    mib = 1 << 20
    cold = 256 * mib  # flush_plan's cap, as on a host whose sysfs reports a 480 MiB L3
    # A bf16 1024x1024 weight is 2 MiB: ceil(256 / 2) + 1 = 129 copies, 258 MiB, shared by its 4 M.
    qkv = [cpu_ops.gemm_params(m, 1024, 1024, "bf16", "o") for m in (1, 2, 4, 8)]
    assert cpu_ops.held_bytes(qkv[0], cold) == ((1024, 1024, "bf16", "engine"), 258 * mib)
    # Decode attention at batch 8, 1024 positions, 2 KV heads of 128, bf16: K and V are
    # 2 * 8 * 1024 * 2 * 128 * 2 B = 8 MiB: 33 copies, 264 MiB. vLLM's paged cache holds the same
    # (1024 positions are 8 whole blocks of 128).
    att = cpu_ops.attention_params(8, 1024, 8, 2, 128, "bf16")
    assert cpu_ops.held_bytes(att, cold) == (None, 264 * mib)
    assert cpu_ops.held_bytes(att, cold, vllm=True) == (None, 264 * mib)
    # 64 positions fill half a vLLM block: its cache copy is twice the K/V (64 KiB of K/V, 512 copies).
    short = cpu_ops.attention_params(1, 64, 8, 2, 128, "bf16")
    assert cpu_ops.held_bytes(short, cold) == (None, 512 * 64 * 1024)
    assert cpu_ops.held_bytes(short, cold, vllm=True) == (None, 512 * 128 * 1024)
    # Budget 600 MiB: the weight (258, counted once for its four M) and one attention case (264)
    # fit, the second attention case starts a group, the floor (no copies) joins it.
    plan = qkv + [att, att, cpu_ops.floor_params()]
    assert cpu_ops.interleave_groups(plan, cold, 600 * mib) == [[0, 1, 2, 3, 4], [5, 6]]
    # A case larger than the budget is a group of its own, never dropped.
    assert cpu_ops.interleave_groups(plan, cold, 100 * mib) == [[0, 1, 2, 3], [4], [5, 6]]
    # The budget: an eighth of the memory, within [1, 4] GiB.
    gib = 1 << 30
    assert cpu_ops.interleave_budget_bytes(24 * gib) == 3 * gib
    assert cpu_ops.interleave_budget_bytes(4 * gib) == gib
    assert cpu_ops.interleave_budget_bytes(512 * gib) == 4 * gib
