"""Foreign files as untrusted data (ingest/): a wrong type is refused in one line naming the file
and the field; figures are checked the way the tool that wrote them defines them (nccl-tests:
algbw = size / time, #wrong = 0, redop 'none' for collectives that do not reduce)."""

import copy
import json
import math
from pathlib import Path

import pytest

from inferecon.core.errors import UserError
from inferecon.ingest.nccl_tests import read_nccl_tests

FIX = Path(__file__).parent / "fixtures" / "ingest"
DOC = json.loads((FIX / "synthetic_all_reduce_perf_8xh100.json").read_text())


def _write(tmp_path, doc, name="all_reduce_perf.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def _edit(fn):
    d = copy.deepcopy(DOC)
    fn(d)
    return d


def _set(path, value):
    def fn(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return fn


# (edit of the real-shaped -J document, fragment of the one-line refusal)
BAD_JSON = [
    (_set(["config"], "graph"), "config must be an object"),
    (_set(["config"], [1, 2]), "config must be an object"),
    (_set(["config", "devices"], "dgx-node1"), "config.devices must be a list"),
    (_set(["config", "devices", 0], "rank0"), "config.devices[0] must be an object"),
    (_set(["config", "devices", 0, "rank"], "0"), "config.devices[0].rank must be a whole number"),
    (_set(["config", "graph"], "yes"), "config.graph must be a whole number"),
    (_set(["results"], "none"), "results must be a list"),
    (lambda d: d.pop("results"), "results must be a list"),
    (_set(["results", 3], [8, 2]), "results[3] must be an object"),
    (_set(["results", 3, "size"], "8192"), "results[3].size must be a whole number"),
    (_set(["results", 3, "size"], 8192.5), "results[3].size must be a whole number"),
    (_set(["results", 3, "type"], 4), "results[3].type must be a string"),
    (_set(["results", 3, "out_of_place"], "fast"), "results[3].out_of_place must be an object"),
    (_set(["results", 3, "out_of_place", "time"], -24.3), "results[3].out_of_place.time = -24.3 us is outside"),
    (_set(["results", 3, "out_of_place", "time"], float("nan")), "results[3].out_of_place.time must be a finite number"),
    (_set(["results", 3, "out_of_place", "time"], "24.3"), "results[3].out_of_place.time must be a number"),
    (_set(["results", 3, "out_of_place", "alg_bw"], None), "results[3].out_of_place.alg_bw must be a number"),
    (_set(["results", 3, "in_place", "bus_bw"], 1e308 * 10), "results[3].in_place.bus_bw must be a finite number"),
    (_set(["results", 3, "in_place", "bus_bw"], True), "results[3].in_place.bus_bw must be a number"),
    (lambda d: [r.update(size=0) for r in d["results"]], "every nccl-tests result has size 0"),
]


@pytest.mark.parametrize("edit, fragment", BAD_JSON, ids=[b[1][:40] for b in BAD_JSON])
def test_wrong_json_field_is_one_line(tmp_path, edit, fragment):
    with pytest.raises(UserError) as exc:
        read_nccl_tests(str(_write(tmp_path, _edit(edit))))
    msg = str(exc.value)
    assert "\n" not in msg and "all_reduce_perf.json" in msg and fragment in msg, msg


def test_json_times_in_another_unit_are_refused(tmp_path):
    # Every time x1000 (ms written where nccl-tests writes µs): alg_bw = size / time no longer
    # holds for the large sizes; the small ones, too slow to check, must not be fitted alone.
    d = _edit(lambda d: [r[k].update(time=r[k]["time"] * 1000) for r in d["results"] for k in ("out_of_place", "in_place")])
    with pytest.raises(UserError, match=r"algbw .* is not size / time .* in µs, as nccl-tests writes it: times in another unit"):
        read_nccl_tests(str(_write(tmp_path, d)))


def test_json_row_with_wrong_elements_is_not_fitted(tmp_path):
    d = _edit(_set(["results", 20, "out_of_place", "nwrong"], 3.0))
    (t,) = read_nccl_tests(str(_write(tmp_path, d)))
    assert [p for p in t.points if p.line == 20 and p.side == "out"] == []
    assert any("3 wrong elements" in why for _, why in t.bad_rows)
    assert len(t.points) == 62 - 1  # the fixture's 31 results x 2 sides, less the failed one


def _row(size, count, redop, time_us, world=8, wrong="0"):
    # nccl-tests' own definitions: algbw = size / time; busbw = algbw x (n-1)/n for these ops.
    algbw = size / (time_us * 1e3)
    busbw = algbw * (world - 1) / world
    side = f"{time_us:8.2f} {algbw:7.2f} {busbw:7.2f} {wrong:>6}"
    return f"{size:12d} {count:12d} {'float':>8} {redop:>7} {-1:7d} {side} {side}"


HEADER = ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n"
          "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)\n")
SIZES = [(1 << 20, 200.0), (1 << 24, 400.0), (1 << 28, 2000.0)]


def _table(redop, wrong="0"):
    return HEADER + "\n".join(_row(s, s // 4 // 8, redop, t, wrong=wrong if s == 1 << 24 else "0") for s, t in SIZES) + "\n"


def test_concatenated_tables_of_two_collectives_are_refused(tmp_path):
    p = tmp_path / "all_gather_perf.txt"
    p.write_text("# nThread 1 nGpus 8 minBytes 1048576 maxBytes 268435456 step: 16(factor) warmup iters: 5 iters: 20\n"
                 + _table("none") + "# nThread 1 nGpus 8 minBytes 1048576 maxBytes 268435456\n" + _table("sum"))
    with pytest.raises(UserError, match=r"redop is 'sum', but all_gather does not reduce"):
        read_nccl_tests(str(p))


def test_text_row_with_wrong_elements_is_not_fitted(tmp_path):
    p = tmp_path / "all_gather_perf.txt"
    p.write_text(_table("none", wrong="12"))
    (t,) = read_nccl_tests(str(p))
    assert sorted({pt.size for pt in t.points}) == [1 << 20, 1 << 28]
    assert any("wrong elements" in why for _, why in t.bad_rows)
    assert t.world == 8 and t.op == "all_gather"


def test_deeply_nested_json_is_one_line(tmp_path):
    p = _write(tmp_path, '{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(UserError) as exc:
        read_nccl_tests(str(p))
    assert "all_reduce_perf.json" in str(exc.value) and "nested too deeply" in str(exc.value)


NVB = json.loads((FIX / "nvbandwidth.json").read_text())


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(nvbandwidth="x"), "nvbandwidth must be an object"),
    (lambda d: d["nvbandwidth"].update(testcases="device_local_copy"), "nvbandwidth.testcases must be a list"),
    (lambda d: d["nvbandwidth"]["testcases"].__setitem__(0, 5), "testcases[0] must be an object"),
    (lambda d: d["nvbandwidth"]["testcases"][0].update(bandwidth_matrix="1480"), "testcases[0].bandwidth_matrix must be a list"),
    (lambda d: d["nvbandwidth"]["testcases"][0]["bandwidth_matrix"][0].__setitem__(0, "fast"),
     "bandwidth_matrix[0][0] must be a bandwidth in GB/s or N/A"),
    (lambda d: d["nvbandwidth"]["testcases"][0]["bandwidth_matrix"][0].__setitem__(0, True), "must be a number (GB/s)"),
    (lambda d: d["nvbandwidth"]["testcases"][0]["bandwidth_matrix"][0].__setitem__(0, "inf"), "must be a finite number"),
    (lambda d: d["nvbandwidth"]["testcases"][0]["bandwidth_matrix"][0].__setitem__(0, "1e9"), "= 1e+09 GB/s is outside"),
    (lambda d: d["nvbandwidth"]["testcases"][0].update(name=7), "testcases[0].name must be a string"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_nvbandwidth_json_fields(tmp_path, edit, fragment):
    from inferecon.ingest.links import read_link_file

    d = copy.deepcopy(NVB)
    edit(d)
    p = tmp_path / "nvbandwidth.json"
    p.write_text(json.dumps(d))
    with pytest.raises(UserError) as exc:
        read_link_file(p)
    assert "nvbandwidth.json" in str(exc.value) and fragment in str(exc.value), str(exc.value)
