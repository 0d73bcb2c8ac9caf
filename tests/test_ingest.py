"""nccl-tests and nvbandwidth outputs read as measurements (fixture files in their formats)."""

import pytest

from inferecon.calibration.ingest import parse_nccl_tests, parse_nvbandwidth
from inferecon.errors import UserError

FIX = "tests/fixtures/ingest/"


@pytest.mark.parametrize("name", ["all_reduce_perf_8xh100.txt", "all_reduce_perf_8xh100.json"])
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


def test_older_format_two_nodes_from_filename():
    df = parse_nccl_tests(FIX + "all_gather_perf_2nodes.txt")
    assert set(df["op"]) == {"all_gather"}
    assert set(df["world_size"]) == {4} and set(df["nodes"]) == {2} and set(df["scope"]) == {"inter"}


def test_op_given_explicitly_and_mislabelled_file(tmp_path):
    text = (tmp_path / "perf.txt")
    text.write_text(open(FIX + "all_reduce_perf_8xh100.txt").read().replace("Collective test starting: all_reduce_perf", ""))
    with pytest.raises(UserError, match="cannot tell which collective"):
        parse_nccl_tests(text)
    with pytest.raises(UserError, match="factor 0.875"):
        parse_nccl_tests(text, "all_gather")  # busbw says all-reduce, not all-gather
    assert len(parse_nccl_tests(text, "all_reduce")) == 31


def test_garbage_is_a_user_error(tmp_path):
    p = tmp_path / "all_reduce_perf.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(UserError, match="no nccl-tests result rows"):
        parse_nccl_tests(p)
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(UserError, match="not valid nccl-tests JSON"):
        parse_nccl_tests(tmp_path / "x.json", "all_reduce")
    with pytest.raises(UserError, match="no nvbandwidth testcase"):
        parse_nvbandwidth(p)


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
