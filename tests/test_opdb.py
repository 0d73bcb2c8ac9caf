"""Per-op measurement databases: the reader (ingest/opdb.py), the fit (calibration/opdb_fit.py),
`calibrate --op-db` and the op_fits that profile.json / engine.json carry.

Synthetic fixture (tests/fixtures/opdb/db, written by make_fixtures.py): every latency there is
computed from the parameters at the top of make_fixtures.py, so those parameters are the expected
values of the fits. The real tables (aiconfigurator-core, installed by `make test`) are checked
against figures quoted in issue 20 from those tables; those tests skip when it is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_check import one_line_error
from inferecon.calibration.opdb_fit import calibrate_from_opdb
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.ingest.opdb import open_database
from inferecon.model.engine import EngineProfile
from inferecon.model.hardware import HardwareProfile
from inferecon.model.catalog import get_model
from inferecon.model.published import get_profile

FIXTURE = Path(__file__).parent / "fixtures" / "opdb" / "db"
sys.path.insert(0, str(FIXTURE.parent))
import make_fixtures as fx  # noqa: E402  (the parameters the synthetic rows were computed from)

HAVE_AIC = importlib.util.find_spec("aiconfigurator_core") is not None
needs_aic = pytest.mark.skipif(not HAVE_AIC, reason="aiconfigurator-core not installed (pip install 'inferecon[opdb]')")
GEMM = ("h100_sxm", "gemm", "vllm", "1.0.0", "gemm_perf")
H100_L2_BYTES = 50e6


@pytest.fixture(scope="module")
def fitted():
    return calibrate_from_opdb(str(FIXTURE), "h100-sxm", "vllm")


@pytest.fixture(scope="module")
def h200_trtllm():
    """The real database's H200 TRT-LLM calibration (default version), solved once for the tests reading it."""
    return calibrate_from_opdb(None, "h200", "trtllm")


@pytest.fixture()
def db_copy(tmp_path):
    root = tmp_path / "db"
    shutil.copytree(FIXTURE, root)
    return root


# -- the reader ----------------------------------------------------------------------------

def test_units_are_normalised():
    db = open_database(FIXTURE)
    g = db.read(*GEMM, l2_bytes=H100_L2_BYTES).rows
    row = g[(g.m == 1) & (g.n == 8192) & (g.k == 8192) & (g.flag == "")].iloc[0]
    # By hand: bytes = (8192*8192 + 8192 + 8192) * 2 = 134,250,496 -> / 2800e3 B/us = 47.946 us;
    # FLOP 2*8192*8192 = 134,217,728 -> / 800e6 FLOP/us = 0.168 us; t = 4 + 47.946 = 51.946 us
    # (stored as 0.051946 ms).
    assert row.time_us == pytest.approx(51.946, abs=1e-3)
    assert row["dtype"] == "bf16"
    n = db.read("h100_sxm", "comm", "nccl", "2.0.0", "nccl_perf").rows
    # message_size counts elements: 8192 half-precision elements are 16,384 bytes.
    assert set(n[n.message_bytes == 16384].world_size) == {2, 8}
    a = db.read("h100_sxm", "attention", "vllm", "1.0.0", "generation_attention_perf").rows
    # A decode row at step 1023 after a 1-token prompt attends over 1024 cached tokens.
    assert set(a[a.kv_len == 1024].batch) == {1, 8, 64}
    assert 1023 not in set(a.kv_len)


def test_rows_that_disagree_with_their_folder_are_flagged_and_l2_resident_gemms_marked():
    t = open_database(FIXTURE).read(*GEMM, l2_bytes=H100_L2_BYTES)
    flagged = t.rows[t.rows.flag != ""]
    assert list(flagged.flag) == ["device"] and list(flagged.device) == ["NVIDIA A100-SXM4-80GB"]
    # 4096 x 4096 bf16 weights = 33.5 MB < 50 MB of L2: marked; 8192 x 8192 = 134 MB: not.
    l2 = t.rows[t.rows.l2_resident]
    assert list(zip(l2.n, l2.k)) == [(4096, 4096)]
    assert len(t.clean) == len(t.rows) - 2
    assert t.source.rows_flagged == 1 and t.source.rows_l2_resident == 1 and t.source.provenance == "synthetic"
    # NCCL tables name the engine that drove NCCL (TRTLLM here): that is not a disagreement.
    assert (open_database(FIXTURE).read("h100_sxm", "comm", "nccl", "2.0.0", "nccl_perf").rows.flag == "").all()


def test_bad_tables_are_one_line_errors(db_copy):
    folder = db_copy / "h100_sxm" / "gemm" / "vllm" / "1.0.0"
    table = folder / "gemm_perf.parquet"
    df = pd.read_parquet(table)
    db = open_database(db_copy)

    df.drop(columns=["k"]).to_parquet(table)
    with pytest.raises(UserError, match="missing column k"):
        db.read(*GEMM)
    table.write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable Parquet table"):
        db.read(*GEMM)
    table.unlink()
    with pytest.raises(UserError, match="missing table"):
        db.read(*GEMM)
    df.iloc[:5].to_parquet(table)
    with pytest.raises(UserError, match="5 rows, its collection_meta.yaml records 44"):
        db.read(*GEMM)
    df.to_parquet(table)
    meta = folder / "collection_meta.yaml"
    meta.write_text(meta.read_text().replace("framework: vllm", "framework: sglang"))
    with pytest.raises(UserError, match="records framework 'sglang', the folder says 'vllm'"):
        db.read(*GEMM)
    meta.write_text("runtime: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        db.read(*GEMM)


# -- the fit -------------------------------------------------------------------------------

def test_fit_recovers_the_parameters_the_rows_were_computed_from(fitted):
    f = fitted.profile.op_fits
    g = f.gemm_fit("bf16")
    # The L2-resident row (0.1 us) and the A100-labelled row (50 ms) would each pull the fit off.
    assert (g.t0_us, g.tflops, g.gbps) == pytest.approx((fx.GEMM_T0_US, fx.GEMM_TFLOPS, fx.GEMM_GBPS), rel=1e-3)
    assert g.hbm_efficiency == pytest.approx(2800 / 3350, rel=1e-3)  # H100 SXM datasheet: 3350 GB/s
    assert g.quality.n_points == 42 and g.quality.folds == 5 and g.quality.heldout_mape < 1e-4
    a = f.attention_fit("bf16")
    assert (a.floor_us, a.gbps, a.tflops) == pytest.approx((fx.ATTN_FLOOR_US, fx.ATTN_GBPS, fx.ATTN_TFLOPS), rel=1e-3)
    nccl = f.collective_lines("all_reduce", 8, "nccl")
    custom = f.collective_lines("all_reduce", 8, "vllm_custom")
    # Segments at 64 KiB, 1 MiB, 16 MiB (and 256 MiB, beyond the fixture's largest message).
    assert [c.min_bytes for c in nccl] == [0, 65536, 1048576, 16777216]
    for c in nccl:
        assert (c.alpha_us, c.beta_gbps) == pytest.approx((fx.NCCL_ALPHA_US, fx.NCCL_BETA_GBPS), rel=1e-3)
    assert (custom[0].alpha_us, custom[0].beta_gbps) == pytest.approx((fx.CUSTOM_ALPHA_US, fx.CUSTOM_BETA_GBPS),
                                                                     rel=1e-3)
    assert custom[0].mode == "graph" and custom[0].source.backend == "vllm"
    e = fitted.engine.op_fits
    # Above 1 MiB the engine's table reads NCCL's times: its own all-reduce stops at 1 MiB.
    assert [(c.world_size, c.custom_max_bytes) for c in e.allreduce] == [(2, fx.CUSTOM_MAX_BYTES),
                                                                        (8, fx.CUSTOM_MAX_BYTES)]
    assert e.attention_floor_us == pytest.approx({"bf16": fx.ATTN_FLOOR_US}, rel=1e-3)
    assert e.step_overhead_us is None  # per-op tables cannot measure it
    # Estimate: 3 elementwise kernels per layer at the per-kernel floor, the fastest GEMM row
    # (the planted L2-resident one, 0.1 us).
    assert e.cuda_graph_kernel_us == pytest.approx(0.1) and e.elementwise_per_layer_us == pytest.approx(0.3)
    assert any("no MoE table" in n for n in f.notes)


def test_the_existing_models_read_the_fits_too(fitted):
    p = fitted.profile
    assert p.compute.gemm_fit["bf16"]["roofline"]["t0_us"] == pytest.approx(fx.GEMM_T0_US, rel=1e-3)
    graph = [c for c in p.network.collectives if c.mode == "graph"]
    assert {c.world_size for c in graph} == {2, 8} and all(c.collective == "all_reduce" for c in graph)
    assert p.provenance.versions == {"vllm": "1.0.0", "nccl": "2.0.0"}


def test_profiles_round_trip_and_old_files_load_unchanged(fitted, tmp_path):
    fitted.profile.save(tmp_path / "profile.json")
    fitted.engine.save(tmp_path / "engine.json")
    assert HardwareProfile.load(tmp_path / "profile.json").op_fits == fitted.profile.op_fits
    assert EngineProfile.load(tmp_path / "engine.json").op_fits == fitted.engine.op_fits
    old = get_profile("h100-sxm").to_dict()
    del old["op_fits"]  # as every profile saved before op-level calibration
    assert HardwareProfile.from_dict(old).op_fits is None
    eng = EngineProfile(name="vllm", step_overhead_us=100.0).to_dict()
    del eng["op_fits"]
    assert EngineProfile.from_dict(eng).op_fits is None
    broken = json.loads((tmp_path / "profile.json").read_text())
    broken["op_fits"]["gemm"][0]["gbps"] = -1.0
    with pytest.raises(UserError, match="gbps"):
        HardwareProfile.from_dict(broken)


# -- the command ---------------------------------------------------------------------------

def test_calibrate_op_db_writes_both_files_and_predict_takes_them(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["calibrate", "--op-db", str(FIXTURE), "--gpu", "h100-sxm", "--engine", "vllm", "--out", str(out)]) == 0
    assert "vllm_custom up to 1.05 MB" in capsys.readouterr().out
    assert main(["predict", "--model", "llama-3-8b", "--hardware", str(out / "profile.json"),
                 "--engine", str(out / "engine.json")]) == 0
    assert "vllm 1.0.0, op-db" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--gpu", "a100", "--engine", "vllm"], "holds no tables for it; it holds h100-sxm (h100_sxm)"),
    (["--gpu", "h100-sxm", "--engine", "sglang"], "no h100_sxm GEMM tables for it (it holds vllm)"),
    (["--gpu", "h100-sxm", "--engine", "vllm", "--engine-version", "0.24.0"], "(held: 1.0.0)"),
    (["--engine", "vllm"], "--op-db needs --gpu GPU and --engine"),
])
def test_unknown_gpu_engine_or_version_lists_what_the_database_holds(capsys, tmp_path, extra, expected):
    line = one_line_error(capsys, ["calibrate", "--op-db", str(FIXTURE), "--out", str(tmp_path / "o")] + extra)
    assert expected in line


def test_a_table_whose_every_row_disagrees_is_a_metadata_mismatch(capsys, tmp_path, db_copy):
    table = db_copy / "h100_sxm" / "gemm" / "vllm" / "1.0.0" / "gemm_perf.parquet"
    df = pd.read_parquet(table)
    df.assign(version="0.9.0").to_parquet(table)
    line = one_line_error(capsys, ["calibrate", "--op-db", str(db_copy), "--gpu", "h100-sxm", "--engine", "vllm",
                                   "--out", str(tmp_path / "o")])
    assert "metadata mismatch" in line and "0.9.0" in line
    assert one_line_error(capsys, ["calibrate", "--op-db", str(tmp_path / "nowhere"), "--gpu", "h100-sxm",
                                   "--engine", "vllm"]).endswith("no such folder")
    # A folder of another kind (subfolders, no tables: /etc): no empty list, no suggestion.
    (tmp_path / "other" / "h100_sxm" / "notes").mkdir(parents=True)
    (tmp_path / "other" / "h100_sxm" / "notes" / "a.txt").write_text("not a table\n")
    line = one_line_error(capsys, ["calibrate", "--op-db", str(tmp_path / "other"), "--gpu", "h100-sxm",
                                   "--engine", "vllm", "--out", str(tmp_path / "o")])
    assert "no GEMM tables in it" in line and "did you mean" not in line


# -- the real tables (aiconfigurator-core) -------------------------------------------------

@needs_aic
def test_installed_tables_are_found_without_importing_the_package():
    code = ("import sys; from inferecon.ingest.opdb import installed_database as d; db = d(); "
            "print(db.label, 'h100_sxm' in db.systems(), 'aiconfigurator_core' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "aiconfigurator-core" and out[2:] == ["True", "False"]


@needs_aic
def test_real_all_reduce_rows_read_as_issue_20_quotes_them():
    # Issue 20, from these tables: 8 x H100, 16 KB: NCCL 19.0 us, TRT-LLM 3.6, vLLM 5.3, SGLang 3.7.
    db = open_database(None)
    nccl = db.read("h100_sxm", "comm", "nccl", "2.29.2", "nccl_perf").rows
    at = nccl[(nccl.collective == "all_reduce") & (nccl.world_size == 8) & (nccl.message_bytes == 16384)
              & (nccl["dtype"] == "fp16")]
    assert at.time_us.iloc[0] == pytest.approx(19.0, abs=0.05)
    for engine, version, quoted in (("trtllm", "1.3.0rc20", 3.6), ("vllm", "0.24.0", 5.3), ("sglang", "0.5.14", 3.7)):
        c = db.read("h100_sxm", "comm", engine, version, "custom_allreduce_perf").rows
        row = c[(c.world_size == 8) & (c.message_bytes == 16384) & (c["mode"] == "graph")]
        assert row.time_us.iloc[0] == pytest.approx(quoted, abs=0.05), engine


@needs_aic
def test_real_rows_labelled_with_another_version_are_flagged():
    # h200_sxm/comm/nccl/2.26.2/nccl_perf.parquet: every one of its 1008 rows records NCCL 2.29.2.
    t = open_database(None).read("h200_sxm", "comm", "nccl", "2.26.2", "nccl_perf")
    assert t.source.rows == 1008 and t.source.rows_flagged == 1008 and set(t.rows.flag) == {"version"}


@needs_aic
@pytest.mark.slow
def test_real_h100_vllm_profile(tmp_path):
    fit = calibrate_from_opdb(None, "h100-sxm", "vllm", "0.24.0")
    f, e = fit.profile.op_fits, fit.engine.op_fits
    assert {g.dtype for g in f.gemm} >= {"bf16", "fp8", "fp8_block"}
    # Issue 20's finding: inside a CUDA graph the engine's own all-reduce at 8 GPUs starts well
    # below NCCL's (2.6-4.9 us against 7-19 us).
    own = f.collective_lines("all_reduce", 8, "vllm_custom")
    own = [c for c in own if c.mode == "graph"][0]
    nccl = f.collective_lines("all_reduce", 8, "nccl")[0]
    assert own.alpha_us < nccl.alpha_us / 2
    assert e.allreduce_choice(8) is not None and e.allreduce_choice(8).custom_max_bytes >= 1e6
    fit.profile.save(tmp_path / "p.json")
    assert HardwareProfile.load(tmp_path / "p.json").op_fits == f


# -- the decode regime of a GEMM fit ---------------------------------------------------------

def test_gemm_decode_regime_prices_small_m_by_hand():
    from inferecon.model.opfits import GemmFit

    g = GemmFit(dtype="bf16", t0_us=10.0, tflops=100.0, gbps=1000.0, compute_efficiency=None, hbm_efficiency=None,
                decode_m_max=256, decode_t0_us=2.0, decode_tflops=50.0, decode_gbps=800.0, decode_small_gbps=400.0,
                decode_l2_bytes=1e6)
    # M=1, 1024x1024 bf16: weights 2,097,152 B > L2 -> 800 GB/s; bytes 2,097,152 + 2,048 + 2,048
    # = 2,101,248 -> 2.62656 us; FLOPs 2,097,152 / 50e6 us = 0.042 us; + t0 2 us.
    assert g.time_us(1, 1024, 1024) == pytest.approx(4.62656)
    # M=1, 256x1024: weights 524,288 B fit in L2 -> min(400, 800) GB/s; 524,288 + 2,048 + 512
    # = 526,848 B -> 1.31712 us; + 2.
    assert g.time_us(1, 256, 1024) == pytest.approx(3.31712)
    # M=512 is beyond the decode regime: 2·512·1024·1024 = 1,073,741,824 FLOP / 100e6 = 10.73741824 us
    # (over the bytes' 4,194,304 / 1e6 = 4.19 us) + t0 10.
    assert g.time_us(512, 1024, 1024) == pytest.approx(20.73741824)
    # Without the decode fields (files written before them) the one fit prices every M.
    old = dataclasses.replace(g, decode_m_max=None, decode_t0_us=None)
    assert old.time_us(1, 1024, 1024) == pytest.approx(10.0 + 2101248 / 1e6)


def test_gemm_bands_price_each_band_of_m_by_hand():
    import numpy as np

    from inferecon.model.opfits import GemmBand, GemmFit
    from inferecon.model.ops import gemm_params

    bands = [GemmBand(m_max=1, t0_us=3.0, tflops=40.0, gbps=1000.0, small_gbps=500.0),
             GemmBand(m_max=4, t0_us=4.0, tflops=80.0, gbps=2000.0, small_gbps=3000.0)]
    g = GemmFit(dtype="bf16", t0_us=10.0, tflops=100.0, gbps=1000.0, compute_efficiency=None, hbm_efficiency=None,
                decode_m_max=4, decode_t0_us=2.0, decode_tflops=50.0, decode_gbps=800.0, decode_small_gbps=400.0,
                decode_l2_bytes=1e6, decode_bands=bands)
    # M=1, 1024x1024 bf16, weights 2,097,152 B > L2: band 1 at 1000 GB/s: 2,101,248 B -> 2.101248 us + 3.
    assert g.time_us(1, 1024, 1024) == pytest.approx(5.101248)
    # M=3 is in (1, 4]: band 2; bytes 2,097,152 + 3·1024·2·2 = 2,109,440 -> 1.05472 us at 2000 GB/s;
    # FLOPs 6,291,456 / 80e6 us = 0.0786 us; + 4.
    assert g.time_us(3, 1024, 1024) == pytest.approx(5.05472)
    # M=3, 256x1024 (524,288 B of weights, within L2): min(3000, 2000) = 2000 GB/s, never faster
    # than HBM: 524,288 + 6,144 + 1,536 = 531,968 B -> 0.265984 us + 4.
    assert g.time_us(3, 256, 1024) == pytest.approx(4.265984)
    # M=1 within L2: band 1's own 500 GB/s: 524,288 + 2,048 + 512 = 526,848 B -> 1.053696 us + 3.
    assert g.time_us(1, 256, 1024) == pytest.approx(4.053696)
    # M=8 is beyond decode_m_max: the one fit; bytes 2,097,152 + 8·1024·2·2 = 2,129,920 -> 2.12992 us
    # at 1000 GB/s (over FLOPs' 16,777,216 / 100e6 = 0.168 us), + 10.
    assert g.time_us(8, 1024, 1024) == pytest.approx(12.12992)
    # The search's vectorised pricing gives the same figures.
    m = np.array([1.0, 3.0, 3.0, 1.0, 8.0])
    nk = np.array([1024 * 1024, 1024 * 1024, 256 * 1024, 256 * 1024, 1024 * 1024], dtype=float)
    t0, f, b = gemm_params(g, m, nk * 2.0)
    assert list(t0) == [3.0, 4.0, 4.0, 3.0, 10.0]
    assert list(f) == [40.0, 80.0, 80.0, 40.0, 100.0]
    assert list(b) == [1000.0, 2000.0, 2000.0, 500.0, 1000.0]


def test_gemm_serial_k_bound_by_hand():
    import numpy as np

    from inferecon.model.opfits import GemmBand, GemmFit
    from inferecon.model.ops import gemm_params

    band = GemmBand(m_max=1, t0_us=3.0, tflops=40.0, gbps=1000.0, small_gbps=1000.0, k_per_us=512.0)
    g = GemmFit(dtype="bf16", t0_us=10.0, tflops=100.0, gbps=1000.0, compute_efficiency=None, hbm_efficiency=None,
                decode_m_max=1, decode_t0_us=2.0, decode_tflops=50.0, decode_gbps=800.0, decode_small_gbps=400.0,
                decode_l2_bytes=1e6, decode_bands=[band])
    # M=1, N=256, K=8192: bytes 4,194,304 + 16,384 + 512 = 4,211,200 -> 4.2112 us at 1000 GB/s; the
    # serial bound 8192 / 512 = 16 us is longer: 3 + 16 = 19 us.
    assert g.time_us(1, 256, 8192) == pytest.approx(19.0)
    # M=1, N=16384, K=1024: bytes 33,554,432 + 2,048 + 32,768 = 33,589,248 -> 33.589248 us, over
    # 1024 / 512 = 2 us: the bandwidth holds, + 3.
    assert g.time_us(1, 16384, 1024) == pytest.approx(36.589248)
    nbytes = np.array([4211200.0, 33589248.0])
    k = np.array([8192.0, 1024.0])
    t0, f, b = gemm_params(g, np.array([1.0, 1.0]), np.array([256 * 8192 * 2.0, 16384 * 1024 * 2.0]), k, nbytes)
    assert list(t0 + nbytes / (b * 1e3)) == pytest.approx([19.0, 36.589248])


def test_gemm_serial_k_bound_is_recovered_from_a_synthetic_table():
    # Synthetic rows (not measured): t = 5 us + max(bytes / 2000 GB/s, K / 400 per us), M = 1,
    # weights all beyond 1 kB of "L2"; the fit recovers the three figures and misses nothing.
    import numpy as np

    from inferecon.calibration import opdb_fit as F

    rng = np.random.default_rng(2)
    n = rng.choice([128, 512, 2048, 8192, 32768], 300).astype(float)
    k = rng.choice([128, 1024, 4096, 8192, 16384], 300).astype(float)
    nbytes = n * k * 2 + k * 2 + n * 2
    y = 5.0 + np.maximum(nbytes / 2e6, k / 400.0)  # bytes / (2000 GB/s = 2e6 bytes per us)
    small = np.zeros(300, bool)
    small[:20] = True  # the fit needs rows of both kinds; these read at the same rate
    r = F._roofline_fit(2 * n * k, nbytes, y, small=small, floor_at_most_fastest=True, max_tflops=1000.0,
                        max_gbps=3000.0, serial=k)
    assert (r.t0_us, r.gbps, r.serial_rate) == pytest.approx((5.0, 2000.0, 400.0), rel=1e-3)
    assert r.quality().heldout_mape < 1e-3


def test_gemm_band_rows_of_powers_of_two_match_a_sorted_search():
    import numpy as np

    from inferecon.calibration.opdb_fit import DECODE_BANDS_M
    from inferecon.model.opfits import GemmBand
    from inferecon.model.ops import _band_rows

    bands = [GemmBand(m_max=m, t0_us=1.0, tflops=1.0, gbps=1.0) for m in DECODE_BANDS_M]
    m = np.concatenate([np.array([0.0, 0.5, 1.0, 1.0001, 2.0, 3.0, 4.0, 255.9, 256.0, 256.1, 8192.0]),
                        np.random.default_rng(0).uniform(0.0, 600.0, 1000)])
    want = np.searchsorted(np.array(DECODE_BANDS_M, dtype=float), m)  # first m_max >= m
    assert list(_band_rows(bands, m)) == list(want)
    assert list(want[:11]) == [0, 0, 0, 1, 1, 2, 2, 8, 8, 9, 9]


def test_gemm_bands_recover_two_kernels_by_hand():
    # A synthetic decode table (labelled synthetic: not measured) of two kernels: M <= 1 runs at
    # t0 = 3 us and 1000 GB/s beyond L2 (500 within), M in (1, 2] at t0 = 6 us and 2000 GB/s
    # (1500 within); 1 MB of L2. One decode line cannot hold both; each band recovers its own.
    import numpy as np

    from inferecon.calibration import opdb_fit as F

    rng = np.random.default_rng(1)
    n = rng.choice([256, 512, 1024, 2048, 4096], 400).astype(float)
    k = rng.choice([256, 512, 1024, 2048, 4096], 400).astype(float)
    m = np.where(np.arange(400) < 200, 1.0, 2.0)
    nbytes = n * k * 2 + m * k * 2 + m * n * 2
    small = n * k * 2 <= 1e6
    bw = np.where(m == 1, np.where(small, 500.0, 1000.0), np.where(small, 1500.0, 2000.0))
    y = np.where(m == 1, 3.0, 6.0) + nbytes / (bw * 1e3)
    flop = 2 * m * n * k
    bound = dict(small=small, floor_at_most_fastest=True, max_tflops=1000.0, max_gbps=3000.0)
    whole = F._roofline_fit(flop, nbytes, y, **bound)
    bands = F._gemm_bands(m, flop, nbytes, y, small, whole, bound)
    one, two = bands["decode_bands"][:2]
    assert (one.t0_us, one.gbps, one.small_gbps) == pytest.approx((3.0, 1000.0, 500.0), rel=1e-3)
    assert (two.t0_us, two.gbps, two.small_gbps) == pytest.approx((6.0, 2000.0, 1500.0), rel=1e-3)
    assert bands["band_quality"].heldout_mape < 1e-3 < whole.quality(~small).heldout_mape
    # Bands beyond the table's M carry the whole decode fit's figures, scored as nothing.
    assert bands["decode_bands"][-1].m_max == F.DECODE_M_MAX and bands["decode_bands"][-1].quality is None


@needs_aic
@pytest.mark.slow
def test_real_gemm_bands_stream_no_faster_than_hbm_and_beat_one_decode_line():
    # A100 TRT-LLM 1.0.0's weight-only tables: one decode line over M <= 256 (no serial bound)
    # missed the rows beyond L2 by 18.7% (int4_wo) and 14.4% (int8_wo) held out; the bands by
    # 13.7% and 9.5%.
    fit = calibrate_from_opdb(None, "a100-sxm-80gb", "trtllm")
    hbm = get_profile("a100-sxm-80gb").memory.bandwidth_gbps
    for dtype in ("int4_wo", "int8_wo", "bf16"):
        g = fit.profile.op_fits.gemm_fit(dtype)
        assert g.decode_bands and g.band_quality.heldout_mape < g.decode_quality.heldout_mape
        assert all(b.gbps <= hbm * (1 + 1e-6) for b in g.decode_bands)
        assert g.decode_gbps <= hbm * (1 + 1e-6)


@needs_aic
@pytest.mark.slow
def test_real_nvfp4_decode_gemm_grows_with_k_whatever_n():
    # B200 TRT-LLM 1.3.0rc20 nvfp4 at M = 1 (the table's own rows): N = 4096 takes 6.7 us at
    # K = 128, 13.7 at 4096 and 37.1 at 16384, N = 128 at K = 16384 35.8 us: the time follows K,
    # not the bytes. One decode line without the serial bound missed its decode rows by 40.4%.
    fit = calibrate_from_opdb(None, "b200", "trtllm", "1.3.0rc20")
    g = fit.profile.op_fits.gemm_fit("nvfp4")
    assert g.band_quality.heldout_mape < 0.10
    for n, k, measured in ((4096, 128, 6.7), (4096, 4096, 13.7), (4096, 16384, 37.1), (128, 16384, 35.8)):
        assert g.time_us(1, n, k) == pytest.approx(measured, rel=0.2)


@pytest.mark.slow
def test_real_decode_intercept_is_no_slower_than_the_fastest_measured_decode_gemm(h200_trtllm):
    # One roofline over M <= 8192 put H200 TRT-LLM's fp8_block intercept at ~20 us, above the
    # table's own fastest M=1 rows (5.5-10.8 us, issue 20): an intercept cannot exceed a measured time.
    db = open_database(None)
    fit = h200_trtllm
    g = fit.profile.op_fits.gemm_fit("fp8_block")
    t = db.read("h200_sxm", "gemm", "trtllm", g.source.version, "gemm_perf")
    rows = t.rows[(t.rows["flag"] == "") & (t.rows["dtype"] == "fp8_block") & (t.rows["m"] == 1)]
    assert g.decode_t0_us <= rows["time_us"].min()
    assert g.decode_quality.n_points > 100 and g.decode_small_quality.n_points > 100
    assert g.time_us(1, 1280, 8192) < g.t0_us  # Llama 3 70B's QKV at TP 8, one token


@pytest.mark.slow
def test_real_weight_only_gemms_come_from_another_engine_of_the_same_gpu(tmp_path, capsys):
    # aiconfigurator-core 0.12.0 holds A100 weight-only GEMM tables for TRT-LLM 1.0.0 only; vLLM's
    # A100 profile prices AWQ / GPTQ GEMMs from them, and says so, rather than as bf16 at 4-bit bytes.
    from inferecon.model.ops import fallbacks

    fit = calibrate_from_opdb(None, "a100-sxm-80gb", "vllm")
    g = fit.profile.op_fits.gemm_fit("int4_wo")
    assert g is not None and (g.source.backend, g.source.version) == ("trtllm", "1.0.0")
    assert g.source.system == "a100_sxm"
    out = tmp_path / "cal"
    fit.profile.save(tmp_path / "profile.json")
    fit.engine.save(tmp_path / "engine.json")
    awq = get_model("llama-3-8b").with_format("w4a16")
    notes = fallbacks(awq, fit.profile, fit.engine)
    assert any("trtllm 1.0.0's table" in n for n in notes), notes
    assert main(["predict", "--model", "llama-3-8b", "--precision", "4", "--hardware", str(tmp_path / "profile.json"),
                 "--engine", str(tmp_path / "engine.json"), "--batch", "1"]) == 0
    assert "op-level model: int4_wo GEMMs priced from trtllm 1.0.0's table" in capsys.readouterr().err
    assert not out.exists()


# -- MoE: the table's own curve of a measured shape, the fit for the rest --------------------

def test_moe_fit_reads_a_measured_shape_off_its_curve_and_prices_others_by_hand():
    from inferecon.model.opfits import MoeFit, moe_curve_key, op_fits_from_dict, engine_op_fits_from_dict  # noqa: F401

    key = moe_curve_key(7168, 2048, 256, 8, 8, 1)
    assert key == "7168x2048x256x8:tp8:ep1"
    m = MoeFit(dtype="fp8_block", fixed_us=20.0, gbps=4000.0, tflops=400.0, per_token_expert_us=0.01,
               per_expert_us=0.5, shape_curves={key: [[1.0, 4.0, 16.0], [100.0, 200.0, 400.0]]})
    # Log-log interpolation: 2 tokens sit halfway (in log) between 1 and 4 -> sqrt(100 * 200).
    assert m.time_us(2, 7168, 2048, 8, 256, tp=8, ep=1) == pytest.approx((100.0 * 200.0) ** 0.5)
    assert m.time_us(16, 7168, 2048, 8, 256, tp=8, ep=1) == pytest.approx(400.0)
    # Beyond the curve, and at a (tp, ep) it lacks: the fit. 32 tokens, top-8, 256 experts, ep 4:
    # touched = min(256/4, 32*8/4) = 64 experts of 3*7168*2048/8 B = 5,505,024 B each (fp8) =
    # 352,321,536 B / 4000 GB/s = 88.080384 us; FLOPs 2*32*8*3*7168*2048/8/4 = 2,818,572,288 / 400e6 us
    # = 7.05 us < bytes; + 20 fixed + 0.01*256 pairs + 0.5*64 experts = 54.56.
    assert m.time_us(32, 7168, 2048, 8, 256, tp=8, ep=4) == pytest.approx(20.0 + 2.56 + 32.0 + 88.080384)
    # One token, ep 16: the rank receives 8/16 of a routed pair on average: touched 0.5 expert.
    assert m.time_us(1, 7168, 2048, 8, 256, tp=1, ep=16) == pytest.approx(
        20.0 + 0.08 + 0.25 + 0.5 * 3 * 7168 * 2048 / 4000e3)


def test_column_fill_follows_the_columns_own_slope_and_the_bandwidth_floor():
    from inferecon.calibration.opdb_fit import _column_fill

    bs = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    col = np.array([10.0, 12.0, 18.0, np.nan, np.nan])
    # Slope of the last two measured rows: log(18/12) / log(4/2) = log2(1.5); 8 = 2 x 4 -> 18 x 1.5
    # = 27 us, 16 = 4 x 4 -> 18 x 1.5^2 = 40.5 us; the floor 1e6 B per batch at 1000 GB/s = b us is lower.
    got = _column_fill(bs, col, 2, 1e6, 1000.0)
    assert got[3:].tolist() == pytest.approx([27.0, 40.5])
    # At 100 GB/s the floor (10 us per batch: 80, 160 us) binds.
    assert _column_fill(bs, col, 2, 1e6, 100.0)[3:].tolist() == pytest.approx([80.0, 160.0])


def test_grid_fill_only_where_it_beats_the_fit_on_the_tables_own_cells():
    from types import SimpleNamespace

    from inferecon.calibration.opdb_fit import GRID_FILL_STEPS, _fill_grids

    assert GRID_FILL_STEPS == 2
    # One head of 128, bf16: 2 * L * 128 * 2 B per sequence = 524,288 B at L 1024, 10 us at batch 1
    # (52.4 GB/s) and linear in batch; L 2048 twice that. Columns filled two rows beyond their last
    # measured batch, linear (slope 1, equal to the bandwidth floor): L 1024 -> 160, 320 us at 16, 32;
    # L 2048 -> 160, 320 us at 8, 16; batch 32 at L 2048 stays unmeasured (three rows out).
    grid = {"1x1x128": [[1.0, 2.0, 4.0, 8.0, 16.0, 32.0], [1024.0, 2048.0],
                        [10.0, 20.0, 20.0, 40.0, 40.0, 80.0, 80.0, None, None, None, None, None]]}
    bad_fit = SimpleNamespace(t0_us=1000.0, extra_us=[0.0], gbps=1.0, tflops=1.0)
    out, filled, fill_q, fit_q = _fill_grids(grid, bad_fit, 2.0)
    assert filled == 4 and fill_q.heldout_mape == pytest.approx(0.0, abs=1e-12) and fit_q.heldout_mape > 1.0
    flat = out["1x1x128"][2]
    assert flat[:11] == pytest.approx([10.0, 20.0, 20.0, 40.0, 40.0, 80.0, 80.0, 160.0, 160.0, 320.0, 320.0])
    assert flat[11] is None
    # A fit that prices the held-out cells exactly (10 us per batch at L 1024: t0 0, 52.4288 GB/s)
    # ties the fill, and a tie fills nothing.
    exact = SimpleNamespace(t0_us=0.0, extra_us=[0.0], gbps=524288 / 10.0 / 1e3, tflops=1e9)
    same, none_filled, _, _ = _fill_grids(grid, exact, 2.0)
    assert none_filled == 0 and same is grid


def test_moe_routing_follows_aiconfigurator_and_falls_back_to_what_is_fitted():
    from inferecon.calibration.opdb_fit import moe_distributions
    from inferecon.model import ops
    from inferecon.model.catalog import get_model
    from inferecon.model.opfits import EngineOpFits, MoeFit

    # The tables of aiconfigurator-core 0.12.0 hold balanced, power_law_1.01 and _1.2: both power
    # laws are fitted; a collector's table with balanced rows only keeps balanced.
    assert moe_distributions({"balanced", "power_law_1.01", "power_law_1.2"}) == ["power_law_1.01", "power_law_1.2"]
    assert moe_distributions({"balanced"}) == ["balanced"]
    assert moe_distributions({"power_law_2.0", "power_law_1.5"}) == ["power_law_1.5"]
    # DeepSeek (its sdk/models/deepseek.py: alpha 1.01) and Mixtral (sdk/models/moe.py: 1.2).
    assert ops.moe_routing(get_model("deepseek-v3")) == "power_law_1.01"
    assert ops.moe_routing(get_model("mixtral-8x7b")) == "power_law_1.2"
    fits = [MoeFit(dtype="bf16", fixed_us=1.0, gbps=1.0, tflops=1.0, distribution=d)
            for d in ("power_law_1.01", "power_law_1.2")]
    eng = EngineOpFits("synthetic", "toy", "0", moe=fits)
    assert ops._moe_fit(eng, get_model("mixtral-8x7b")).distribution == "power_law_1.2"
    only = EngineOpFits("synthetic", "toy", "0", moe=[MoeFit(dtype="bf16", fixed_us=1.0, gbps=1.0, tflops=1.0)])
    assert ops._moe_fit(only, get_model("mixtral-8x7b")).distribution == "balanced"  # the one there is
    # ... and the explanation says so.
    import dataclasses

    from inferecon.model.engine import EngineProfile
    from inferecon.model.opfits import GemmFit, OpFits
    from inferecon.model.published import get_profile

    gemm = GemmFit("bf16", t0_us=4.0, tflops=500.0, gbps=2000.0, compute_efficiency=None, hbm_efficiency=None)
    hw = dataclasses.replace(get_profile("h100-sxm"), op_fits=OpFits("synthetic", "toy", "0", gemm=[gemm]))
    note = "MoE priced at the table's balanced routing (no power_law_1.2 fit)"
    assert note in ops.fallbacks(get_model("mixtral-8x7b"), hw, EngineProfile(name="toy", op_fits=only))
    assert not any("routing" in n for n in ops.fallbacks(get_model("mixtral-8x7b"), hw,
                                                         EngineProfile(name="toy", op_fits=eng)))


def test_touched_experts_is_one_rule_for_numbers_and_arrays():
    """min(E/ep, t*k/ep), by hand: DeepSeek-V3 (256 experts, top-8). One token on 8 ranks: 8
    routed pairs / 8 = 1 expert; 64 tokens: 512 pairs / 8 = 64 > 256/8 = 32, so all 32 of the rank's
    experts; 3 tokens on one rank: 24 of 256. The same figures elementwise on arrays (the form
    model/ops.py and calibration/opdb_fit.py call)."""
    from inferecon.model.opfits import moe_touched_experts

    assert moe_touched_experts(1, 8, 256, 8) == 1.0
    assert moe_touched_experts(64, 8, 256, 8) == 32.0
    assert moe_touched_experts(3, 8, 256, 1) == 24.0
    got = moe_touched_experts(np.array([1.0, 64.0, 3.0]), 8.0, 256.0, np.array([8.0, 8.0, 1.0]))
    assert got.tolist() == [1.0, 32.0, 24.0]


def _op_fits_file(**lists):
    """An op_fits document (profile or engine file) of the current schema holding `lists`."""
    from inferecon.model.opfits import OPFITS_SCHEMA_VERSION

    return {"schema_version": OPFITS_SCHEMA_VERSION, "gpu": "h200", "engine": "trtllm", "engine_version": "1", **lists}


@pytest.mark.parametrize("curve", [[[1, 2], [3.0]], [[2, 1], [3.0, 4.0]], [[1, 2], [3.0, -1.0]], "x"])
def test_malformed_moe_curve_in_an_engine_file_is_one_line(curve):
    from inferecon.model.opfits import engine_op_fits_from_dict

    data = _op_fits_file(moe=[{"dtype": "fp8", "fixed_us": 1.0, "gbps": 1.0, "tflops": 1.0,
                               "shape_curves": {"k": curve}}])
    with pytest.raises(UserError, match="shape_curves"):
        engine_op_fits_from_dict(data)


@needs_aic
@pytest.mark.slow
def test_real_deepseek_v3_moe_at_tp8_reads_the_trtllm_table(h200_trtllm):
    # aiconfigurator-core 0.12.0, h200_sxm/moe/trtllm/1.3.0rc20, fp8_block at DeepSeek's routing
    # (power_law_1.01, as aiconfigurator prices DeepSeek): DeepSeek-V3's experts at moe tp 8, ep 1
    # take ~100 us at one token (balanced: ~115 us), 4x their bytes at the fitted bandwidth; the
    # op-level model prices that layer at the table's figure.
    import numpy as np

    from inferecon.model import ops

    db = open_database(None)
    fit = h200_trtllm
    model = get_model("deepseek-v3")
    m = ops._moe_fit(fit.engine.op_fits, model)
    assert (m.dtype, m.distribution) == ("fp8_block", "power_law_1.01")
    t = db.read("h200_sxm", "moe", "trtllm", m.source.version, "moe_perf").clean
    rows = t[(t["dtype"] == "fp8_block") & (t["distribution"] == "power_law_1.01") & (t["tokens"] == 1)
             & (t["hidden"] == 7168) & (t["inter"] == 2048) & (t["experts"] == 256) & (t["tp"] == 8) & (t["ep"] == 1)]
    measured = float(rows["time_us"].min())
    assert 80.0 < measured < 200.0
    got = ops._moe_curve_us(m, model, np.array([1.0]), np.array([8.0]), np.array([1.0]))
    assert got[0] == pytest.approx(measured, rel=1e-3)
    assert m.curve_quality.heldout_mape < 0.15 and m.quality.heldout_mape < 0.2
    # Mixtral and every non-DeepSeek MoE read the power_law_1.2 fit (aiconfigurator's generic MoE).
    assert ops._moe_fit(fit.engine.op_fits, get_model("mixtral-8x7b")).distribution == "power_law_1.2"


# -- decode attention: each measured head layout's own grid, MLA from its own tables ----------

def _grid_fit(grids):
    from inferecon.model.opfits import AttentionFit

    return AttentionFit(kv_dtype="bf16", floor_us=5.0, gbps=1000.0, tflops=100.0, shape_grids=grids)


def test_attention_grid_is_read_bilinearly_in_logs_by_hand():
    import types

    import numpy as np

    from inferecon.model import ops

    a = _grid_fit({"8x1x128": [[1.0, 4.0], [100.0, 400.0], [10.0, 20.0, 40.0, 80.0]]})
    # Batch 2, KV 200: the middle of the cell in log-log -> the geometric mean of the corners,
    # (10*20*40*80)^(1/4) = 640000^(1/4) = 28.2843.
    assert a.grid_us("8x1x128", 2, 200) == pytest.approx(28.2843, rel=1e-5)
    assert a.grid_us("8x1x128", 4, 100) == pytest.approx(40.0)
    assert a.grid_us("8x1x128", 8, 100) is None and a.grid_us("8x2x128", 2, 200) is None
    # time_us reads the grid for a layout it holds; elsewhere the fit: 5 + 2*1*100*1*128*2 B / 1e6
    # B/us (51.2 KB over 1000 GB/s = 0.0512 us) vs 4*1*100*8*128 FLOP / 1e8 = 0.004 us.
    assert a.time_us(2, 200, 8, 1, 128) == pytest.approx(28.2843, rel=1e-5)
    assert a.time_us(1, 100, 8, 2, 128) == pytest.approx(5.0 + 0.1024)
    # The vectorised reading in the step model gives the same figures, NaN outside the grid.
    model = types.SimpleNamespace(n_heads=64, n_kv_heads=8, d_head=128)  # heads split 8 ways: 8 x 1 per GPU
    got = ops._attention_grid_us(a, model, False, np.array([8.0, 8.0, 8.0]), np.array([1.0, 1.0, 1.0]),
                                 np.array([2.0, 4.0, 8.0]), 200.0)
    assert got[0] == pytest.approx(28.2843, rel=1e-5) and got[1] == pytest.approx((40.0 * 80.0) ** 0.5)
    assert np.isnan(got[2])
    # A corner the table did not measure leaves the cell to the fit (an exact grid line needs none).
    b = _grid_fit({"8x1x128": [[1.0, 4.0], [100.0, 400.0], [10.0, 20.0, 40.0, None]]})
    assert b.grid_us("8x1x128", 2, 200) is None and b.grid_us("8x1x128", 1, 200) == pytest.approx(200.0 ** 0.5)


@pytest.mark.parametrize("grid", [[[1, 2], [1, 2], [1.0, 2.0]], [[2, 1], [1, 2], [1.0, 2.0, 1.0, 2.0]],
                                  [[1, 2], [1, 2], [1.0, -2.0, 1.0, 2.0]], [[1, 2], [1, 2], [None, None, None, None]],
                                  [[1, 2], [1, 2], [[1.0, 2.0], [1.0, 2.0]]]])
def test_malformed_attention_grid_in_a_profile_is_one_line(grid):
    from inferecon.model.opfits import op_fits_from_dict

    data = _op_fits_file(attention=[{"kv_dtype": "bf16", "floor_us": 1.0, "gbps": 1.0, "tflops": 1.0,
                                     "shape_grids": {"8x1x128": grid}}])
    with pytest.raises(UserError, match="shape_grids"):
        op_fits_from_dict(data)


@needs_aic
@pytest.mark.slow
def test_real_decode_attention_reads_the_tables_mla_for_deepseek(h200_trtllm):
    # aiconfigurator-core 0.12.0, h200_sxm/{attention,mla}/trtllm/1.3.0rc20: Llama 3 70B at TP 8
    # (8 query heads, 1 KV head of 128 on a GPU) and DeepSeek-V3 at TP 8 (16 heads on a GPU over
    # one 576-wide latent) read their table rows; the held-out error of a grid read is small.
    import numpy as np

    from inferecon.model import ops

    db = open_database(None)
    fit = h200_trtllm.profile.op_fits
    gqa = db.read("h200_sxm", "attention", "trtllm", "1.3.0rc20", "generation_attention_perf").clean
    row = gqa[(gqa["kv_dtype"] == "bf16") & (gqa["batch"] == 8) & (gqa["kv_len"] == 1024) & (gqa["n_heads"] == 8)
              & (gqa["n_kv_heads"] == 1) & (gqa["head_dim"] == 128) & (gqa["window"] == 0) & (gqa["beam"] == 1)]
    llama = get_model("llama-3-70b")
    afit, mla = ops._attention_fit(fit, llama, "bf16")
    assert not mla
    got = ops._attention_grid_us(afit, llama, False, np.array([8.0]), np.array([1.0]), np.array([8.0]), 1024.0)
    assert got[0] == pytest.approx(float(row["time_us"].min()), rel=1e-3)
    mt = db.read("h200_sxm", "mla", "trtllm", "1.3.0rc20", "generation_mla_perf").clean
    row = mt[(mt["kv_dtype"] == "bf16") & (mt["batch"] == 1) & (mt["kv_len"] == 2048) & (mt["n_heads"] == 16)]
    ds = get_model("deepseek-v3")
    mfit, mla = ops._attention_fit(fit, ds, "bf16")
    assert mla and mfit.source.op == "mla"
    got = ops._attention_grid_us(mfit, ds, True, np.array([16.0]), np.array([1.0]), np.array([1.0]), 2048.0)
    assert got[0] == pytest.approx(float(row["time_us"].min()), rel=1e-3)
    assert afit.grid_quality.heldout_mape < 0.1 and mfit.grid_quality.heldout_mape < 0.15
