"""Operators' files read as measurements: nccl-tests logs as they appear in the wild (hand-made
fixtures in each format, with times from known α + bytes/β lines), -J JSON, all_reduce_bench
tables, nvbandwidth and p2pBandwidthLatencyTest matrices."""

import pytest

from inferecon.calibration.build_files import fit_table
from inferecon.ingest.files import NcclSpec, parse_nccl_tests, parse_nvbandwidth, read_collective_file
from inferecon.core.errors import UserError

FIX = "tests/fixtures/ingest/"


def _one(name, **kw):
    tables = read_collective_file(NcclSpec(FIX + name, **kw))
    assert len(tables) == 1
    return tables[0]


def _pieces(table):
    return [(f.alpha_us, f.beta_gbps) for f in fit_table(table).fits]


@pytest.mark.parametrize("name", ["synthetic_all_reduce_perf_8xh100.txt", "synthetic_all_reduce_perf_8xh100.json"])
def test_eight_rank_all_reduce_table(name):
    df = parse_nccl_tests(FIX + name)
    assert len(df) == 31
    assert set(df["op"]) == {"all_reduce"} and set(df["world_size"]) == {8} and set(df["scope"]) == {"intra"}
    assert df["device_name"].iloc[0] == "NVIDIA H100 80GB HBM3"
    # busbw = algbw x 2(n-1)/n, algbw = bytes / time: both as nccl-tests defines them.
    big = df[df["bytes"] >= 2**20]
    assert ((big["busbw_gbps"] / big["algbw_gbps"]) - 1.75).abs().max() < 0.02
    assert ((big["bytes"] / big["median_us"] / 1e3) / big["algbw_gbps"] - 1).abs().max() < 0.02
    # -J with -G 1: graph-mode timings.
    assert set(df["mode"]) == {"graph" if name.endswith(".json") else "eager"}


def test_mpirun_tag_output_with_midline_tags_and_log_lines():
    t = _one("mpirun_tag_output_all_reduce_2x8.txt")
    assert (t.op, t.world, t.world_source, t.nodes, t.nodes_source) == ("all_reduce", 16, "device list", 2, "device list")
    assert len(t.frame()) == 11  # 1 KiB .. 1 GiB by 4x; the NCCL INFO lines between rows are not rows
    # The row cut short by the log is named by its line, the rest are read.
    assert [ln for ln, _ in t.bad_rows] == [34]
    # The fixture's times are 20 µs + bytes / 100 GB/s below 1 MiB and 50 µs + bytes / 200 GB/s from 1 MiB.
    (a1, b1), (a2, b2) = _pieces(t)
    assert (a1, b1) == pytest.approx((20.0, 100.0), rel=0.02)
    assert (a2, b2) == pytest.approx((50.0, 200.0), rel=0.02)


def test_srun_label_all_gather_world_from_count_column():
    t = _one("srun_label_all_gather_16.txt")
    # No device list: size / (count x 4 B) = 16 ranks; the node count is an assumption, and says so.
    assert (t.op, t.world, t.world_source) == ("all_gather", 16, "count column")
    assert (t.nodes, t.nodes_source) == (2, "assumed (8 GPUs per node)")
    assert len(t.frame()) == 9 and not t.bad_rows  # '#wrong' is N/A on every row
    [(a, b)] = _pieces(t)
    assert (a, b) == pytest.approx((30.0, 40.0), rel=0.02)


def test_headerless_runner_table_world_from_busbw_ratio():
    # '#' stripped, indented, no device list; rows below 1 GB/s have busbw/algbw of 0..2 from
    # two-decimal rounding and must neither be refused nor decide the world size.
    t = _one("headerless_all_reduce_runner.txt")
    assert (t.world, t.world_source, t.nodes) == (16, "busbw/algbw", 2)
    assert len(t.frame()) == 15
    (a1, b1), (a2, b2) = _pieces(t)
    assert (a1, b1, a2, b2) == pytest.approx((25.0, 60.0, 80.0, 240.0), rel=0.02)


def test_two_tables_in_one_log_with_host_and_timestamp_prefixes():
    rs, ag = read_collective_file(FIX + "two_tables_pdsh_timestamps.txt")
    assert (rs.op, ag.op) == ("reduce_scatter", "all_gather")
    assert rs.world == ag.world == 8 and rs.nodes == ag.nodes == 1
    assert len(rs.frame()) == len(ag.frame()) == 9
    assert rs.first_line < ag.first_line


def test_old_layout_with_times_in_ms():
    # NCCL 2.4-era output: `bytes N type op ... res`, no redop/root, no units line, time in ms,
    # `# Rank 0 on HOST device ...` without Group/Pid, and no program name (the user names it).
    with pytest.raises(UserError, match="cannot tell which collective"):
        read_collective_file(FIX + "old_format_ms_2nodes.txt")
    t = _one("old_format_ms_2nodes.txt", op="all_reduce")
    assert (t.world, t.nodes, t.device_name) == (2, 2, "Tesla V100-SXM2-16GB")
    assert t.frame()["median_us"].tolist()[:2] == [155.0, 469.0]  # 0.155 ms, 0.469 ms
    [(a, b)] = _pieces(t)  # the fixture: 50 µs + bytes / 10 GB/s, printed to the µs
    assert (a, b) == pytest.approx((50.0, 10.0), rel=0.01)


def test_interleaved_runs_are_noted(tmp_path):
    # One job launched twice into one log writes every row twice.
    text = open(FIX + "synthetic_all_reduce_perf_8xh100.txt").read().splitlines()
    rows = [ln for ln in text if ln.strip() and ln.strip()[0].isdigit()]
    doubled = tmp_path / "all_reduce_twice.txt"
    doubled.write_text("\n".join(text + rows) + "\n")
    [t] = read_collective_file(str(doubled))
    assert any("31 sizes appear more than once" in n for n in t.notes)
    assert len(t.frame()) == 31


def test_world_and_nodes_from_the_user_where_the_file_cannot_say():
    with pytest.raises(UserError, match="FILE:send_recv:WORLD"):
        read_collective_file(FIX + "sendrecv_no_devices.txt")
    [t] = read_collective_file(FIX + "sendrecv_no_devices.txt:send_recv:16:2")
    assert (t.world, t.world_source, t.nodes, t.nodes_source, t.op_source) == (16, "user", 2, "user", "user")
    [(a, b)] = _pieces(t)
    assert (a, b) == pytest.approx((10.0, 45.0), rel=0.02)


@pytest.mark.parametrize("spec, message", [
    ("x.txt:allreduce:0", "world size must be a positive integer"),
    ("x.txt:all_reduce:8:16", "16 nodes cannot hold 8 ranks"),
    ("x.txt:gather_all", "unknown collective"),
])
def test_bad_specs(spec, message):
    with pytest.raises(UserError, match=message):
        NcclSpec.parse(spec)


def test_mislabelled_collective_is_refused_with_its_line(tmp_path):
    with pytest.raises(UserError, match=r"synthetic_all_reduce_perf_8xh100.txt:\d+: busbw/algbw = 1.7\d+ at .* all_gather over 8 ranks \(device list\) has factor 0.8750"):
        read_collective_file(FIX + "synthetic_all_reduce_perf_8xh100.txt:all_gather")


def test_unreadable_files_are_one_line_naming_file_and_lines(tmp_path):
    with pytest.raises(UserError, match=r"all_reduce_unreadable.txt: no nccl-tests result rows found "
                                        r"\(unreadable rows at lines 4, 5\)"):
        read_collective_file(FIX + "all_reduce_unreadable.txt")
    p = tmp_path / "all_reduce_perf.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(UserError, match="no nccl-tests result rows"):
        parse_nccl_tests(p)
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(UserError, match=r"x.json:1: not valid nccl-tests JSON"):
        parse_nccl_tests(tmp_path / "x.json", "all_reduce")
    with pytest.raises(UserError, match="no nvbandwidth testcase"):
        parse_nvbandwidth(p)
    with pytest.raises(UserError, match="no such file"):
        read_collective_file(str(tmp_path / "missing.txt"))


def test_torch_all_reduce_bench_table():
    t = _one("torch_all_reduce_bench_8.md")
    assert (t.op, t.world, t.world_source) == ("all_reduce", 8, "busbw/algbw")
    assert len(t.frame()) == 6
    [(a, b)] = _pieces(t)  # the fixture: 20 µs + bytes / 200 GB/s, time recovered from algbw
    assert (a, b) == pytest.approx((20.0, 200.0), rel=0.02)


@pytest.mark.parametrize("name", ["nvbandwidth.txt", "nvbandwidth.json"])
def test_nvbandwidth_local_copy_and_peer_copies(name):
    df = parse_nvbandwidth(FIX + name)
    mem = df[df["benchmark"] == "memory"]
    p2p = df[df["benchmark"] == "p2p"]
    assert len(mem) == 2 and len(p2p) == 2  # N/A diagonal dropped
    # A copy moves the buffer twice (read + write), DESIGN.md's convention.
    assert mem["gbps"].tolist() == pytest.approx([2960.24, 2953.10])
    assert (mem["bytes_moved"] == 2 * mem["bytes"]).all()
    assert p2p["gbps"].tolist() == pytest.approx([389.71, 389.88])


def test_p2p_bandwidth_latency_test_matrices():
    df = parse_nvbandwidth(FIX + "p2p_bandwidth_4gpu.txt")
    uni = df[df["testcase"].str.endswith("unidir") & (df["benchmark"] == "p2p")]
    bi = df[df["testcase"].str.endswith("bidir")]
    # Unidirectional off-diagonal: 380 + row + column; the diagonal is a local copy.
    assert len(uni) == 12 and uni.apply(lambda r: r["gbps"] == 380.0 + r["src"] + r["dst"], axis=1).all()
    assert len(df[df["benchmark"] == "memory"]) == 4
    # Bidirectional entries are both directions together: 750 -> 375 per direction; no diagonal.
    assert len(bi) == 12 and set(bi["gbps"]) == {375.0}
    assert df["device_name"].iloc[0] == "NVIDIA H100 80GB HBM3"


def test_nvbandwidth_host_links_and_bidirectional_totals():
    df = parse_nvbandwidth(FIX + "nvbandwidth_host_and_bidir.txt")
    h2d, d2h = df[df["op"] == "h2d"], df[df["op"] == "d2h"]
    assert h2d["gbps"].tolist() == [55.40, 55.43, 55.38, 55.45] and len(d2h) == 4
    assert set(h2d["benchmark"]) == {"host_link"}
    # A bidirectional matrix prints both directions' total: 780 + 2(i + j) -> 390 + i + j each way.
    d2d = df[df["op"] == "d2d"]
    assert len(d2d) == 12 and d2d.apply(lambda r: r["gbps"] == 390.0 + r["src"] + r["dst"], axis=1).all()


def test_a_row_of_an_unknown_type_is_named_and_log_lines_are_not_rows(tmp_path):
    lines = open(FIX + "synthetic_all_reduce_perf_8xh100.txt").read().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("1048576 "))
    lines[i] = lines[i].replace(" float ", " fp6e3m2 ")
    lines.insert(i, "12 34 processes sent help message help-btl-vader.txt")  # a log line, not a row
    p = tmp_path / "all_reduce_perf.txt"
    p.write_text("\n".join(lines) + "\n")
    [t] = read_collective_file(str(p))
    assert t.bad_rows == [(i + 2, "unknown data type 'fp6e3m2'")]
    assert len(t.frame()) == 30
