"""The public measurements from real H100/H200 clusters beside the project (../shared/reference/
measured, read in place, never copied here): every nccl-tests table ingests and fits, and so do
the link matrices and the PyTorch all-reduce table. Skipped where that folder is absent."""

from pathlib import Path

import pytest

from inferecon.calibration.build_files import fit_table, profile_from_files
from inferecon.ingest.files import read_collective_file, read_link_file

MEASURED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "measured"
pytestmark = pytest.mark.skipif(not MEASURED.is_dir(), reason="../shared/reference/measured not present")
TABLES = sorted(p.name for p in MEASURED.glob("nccl-tests_*.txt")) if MEASURED.is_dir() else []

# World sizes and node counts as SOURCES.md gives them (from each post, not from this reader).
EXPECTED = {
    "nccl-tests_all_reduce_8x8xH100_nccl-tests-issue309-gjaion.txt": (64, 8),
    "nccl-tests_all_reduce_4x8xH100-IB-NDR_nccl-tests-issue309.txt": (32, 4),
    "nccl-tests_all_reduce_10x8xH100_xxrjun-cluster01-N10.txt": (80, 10),
    "nccl-tests_all_reduce_2x8xH100-IB_nebius-dstack.txt": (16, 2),  # no device list: busbw/algbw
    "nccl-tests_all_reduce_8xH100_aws-p5-batch-awsome.txt": (8, 1),  # no device list: busbw/algbw
    "nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-awsome.txt": (16, 2),  # srun -l, no device list
    "nccl-tests_all_gather_2x8xH100-TCPXO_gcp-a3mega-dstack.txt": (16, 2),  # '#' stripped, N/A
    "nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-keitaw-nccl2.22.3.txt": (16, 2),  # tags mid-line
    "nccl-tests_all_reduce_2x8xH100-EFA_aws-p5-keitaw-nccl2.20.3-ofituner.txt": (16, 2),  # INFO lines
    "nccl-tests_alltoall_10x8xH100_xxrjun-cluster01-N10.txt": (80, 10),
}
# Tables of >= 10 sizes whose held-out error is above 10%, and why (README, "Operators' logs").
KNOWN_MISSES = {
    # 10 sizes from 32 MiB over 10 nodes; algbw falls from 160 to 152 GB/s between 128 and 256 MiB
    # (fabric contention): no α + bytes/β line predicts a held-out size across that dip.
    "nccl-tests_all_gather_10x8xH100_xxrjun-cluster01-N10.txt",
}


def test_thirty_two_tables():
    assert len(TABLES) == 32


@pytest.mark.parametrize("name", TABLES)
def test_every_real_table_ingests_and_fits(name):
    tables = read_collective_file(str(MEASURED / name))
    assert len(tables) == 1
    t = tables[0]
    stem = {"all_to_all": "alltoall", "send_recv": "sendrecv"}.get(t.op, t.op)
    assert name.startswith(f"nccl-tests_{stem}_")
    if name in EXPECTED:
        assert (t.world, t.nodes) == EXPECTED[name]
    assert not t.bad_rows
    res = profile_from_files([str(MEASURED / name)], [], "h100-sxm")  # each table into a profile on its own
    [ff] = res.file_fits
    rows = len(t.frame())
    assert ff.result.n_points == rows >= 3
    assert [(f.collective, f.world_size) for f in res.profile.network.collectives] == [(t.op, t.world)] * len(ff.fits)
    if t.op in ("all_reduce", "all_gather", "reduce_scatter") and rows >= 10 and name not in KNOWN_MISSES:
        assert ff.result.heldout_mape <= 0.10, (name, ff.result.heldout_mape)


def test_known_misses_still_miss():
    """A known miss that starts to fit belongs out of the list (and out of the README's note)."""
    for name in KNOWN_MISSES:
        assert fit_table(read_collective_file(str(MEASURED / name))[0]).result.heldout_mape > 0.10


@pytest.mark.slow
def test_all_tables_and_link_files_into_one_h100_profile():
    links = [MEASURED / "p2pBandwidthLatencyTest_unidir_writes_8xH100_ml-engineering.txt",
             MEASURED / "p2pBandwidthLatencyTest_bidir_8xH100SXM_nccl-issue1264.txt",
             MEASURED / "nvbandwidth_host-device-sm_8xH100_nvbandwidth-issue24.txt"]
    res = profile_from_files([str(MEASURED / n) for n in TABLES], [str(p) for p in links], "h100-sxm")
    assert len(res.file_fits) == 32
    keys = {(f.collective, f.world_size, f.scope) for f in res.profile.network.collectives}
    assert ("all_reduce", 64, "inter") in keys and ("send_recv", 80, "inter") in keys
    q = res.profile.provenance.fit_quality
    # Provenance per term: the file, its sha256 and the lines used.
    ar64 = q["network:all_reduce/w64/inter/eager"]
    assert ar64["file"].endswith("8x8xH100_nccl-tests-issue309-gjaion.txt") and len(ar64["sha256"]) == 64
    assert len(ar64["lines_used"]) == 14
    # The unidirectional matrix's off-diagonal median (SOURCES.md: ~364-394 GB/s) and the
    # bidirectional one halved (~740-773 / 2) set the NVLink figure; host links are reported.
    assert 360 < q["link:d2d"]["params"]["gbps"] < 395
    assert q["link:h2d"]["params"]["gbps"] == pytest.approx(35.25, abs=0.2)
    assert q["link:d2h"]["params"]["gbps"] == pytest.approx(52.77, abs=0.02)


def test_h200_all_reduce_bench_table_into_an_h200_profile():
    f = MEASURED / "torch_all_reduce_bench_8xH200_ml-engineering.txt"
    [t] = read_collective_file(str(f))
    assert (t.op, t.world, t.world_source, len(t.frame())) == ("all_reduce", 8, "busbw/algbw", 20)
    res = profile_from_files([str(f)], [], "h200")
    assert res.profile.network.collectives[0].world_size == 8


def test_link_files_read():
    uni = read_link_file(MEASURED / "p2pBandwidthLatencyTest_unidir_writes_8xH100_ml-engineering.txt")
    assert len(uni[uni["benchmark"] == "p2p"]) == 56
    bi = read_link_file(MEASURED / "p2pBandwidthLatencyTest_bidir_8xH100SXM_nccl-issue1264.txt")
    assert bi["gbps"].between(369, 387).all()  # 739.42 .. 773.25 both ways, halved
    hd = read_link_file(MEASURED / "nvbandwidth_host-device-sm_8xH100_nvbandwidth-issue24.txt")
    assert sorted(hd["op"].unique()) == ["d2h", "h2d"] and len(hd) == 16


@pytest.mark.parametrize("name", ["p2pBandwidthLatencyTest_unidir_writes_8xH100_ml-engineering.txt",
                                  "p2pBandwidthLatencyTest_bidir_8xH100SXM_nccl-issue1264.txt",
                                  "nvbandwidth_host-device-sm_8xH100_nvbandwidth-issue24.txt"])
def test_each_link_file_into_a_profile(name):
    res = profile_from_files([], [str(MEASURED / name)], "h100-sxm")
    terms = [k for k in res.profile.provenance.fit_quality if k.startswith("link:")]
    assert terms and all(res.profile.provenance.fit_quality[k]["files"] == [str(MEASURED / name)] for k in terms)


@pytest.mark.slow
def test_every_public_table_is_fitted_and_priced():
    from inferecon.validation.public_network import SIZES, rows

    table = rows(MEASURED, "h100-sxm")
    assert len(table) == 33
    # Each cell inside a table's measured range holds (fitted, published) µs, both positive.
    cells = [c for *_, cs, _ in table for c in cs if c is not None]
    assert cells and all(fit > 0 and pub > 0 for fit, pub in cells)
    assert all(len(cs) == len(SIZES) for *_, cs, _ in table)


@pytest.mark.slow
def test_benchmark_script_prints_every_table():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_public_network.py"
    r = subprocess.run([sys.executable, str(script), "--dir", str(MEASURED), "--markdown"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sum(line.startswith("| ") and "fit / pub." not in line for line in r.stdout.splitlines()) == 33
    assert "33 tables" in r.stdout
