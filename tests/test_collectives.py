"""Collectives benchmark: pure parts (busbw factors, sizes, pairing, launcher detection) and
CPU runs through torchrun on loopback with gloo (2 ranks, 1 rank, killed and resumed, a hung
rank, Ctrl-C). GPU-only checks (NCCL, CUDA graphs) are marked `gpu`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inferecon.core.errors import UserError
from inferecon.harness import distributed as hdist
from inferecon.kernels import collectives as coll
from inferecon.sweeps import collectives as runs
from proc_tree import alive, descendants

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Pure parts


@pytest.mark.parametrize("n, ar, ag", [(1, 0.0, 0.0), (2, 1.0, 0.5), (4, 1.5, 0.75), (8, 1.75, 0.875)])
def test_busbw_factors_follow_nccl_tests(n, ar, ag):
    assert coll.busbw_factor("all_reduce", n) == pytest.approx(ar)
    assert coll.busbw_factor("all_gather", n) == pytest.approx(ag)
    assert coll.busbw_factor("all_to_all", n) == pytest.approx(ag)
    assert coll.busbw_factor("send_recv", n) == 1.0


def test_message_sizes_end_at_the_requested_maximum():
    assert coll.message_sizes(8, 1 << 20, 8) == [8, 64, 512, 4096, 32768, 262144, 1 << 20]
    assert coll.message_sizes(8, 1 << 30, 8)[-1] == 1 << 30
    gpu = coll.sweep_config("cuda", quick=False)
    assert gpu.sizes[0] == 8 and gpu.sizes[-1] == 1 << 30 and len(gpu.sizes) == 28
    cpu_quick = coll.sweep_config("cpu", quick=True)
    assert cpu_quick.sizes[-1] == 1 << 20


def test_graph_mode_only_on_cuda_and_small_messages():
    cpu = coll.plan(coll.sweep_config("cpu", quick=True))
    assert {c.mode for c in cpu} == {"eager"}
    gpu = coll.sweep_config("cuda", quick=True)
    cases = coll.plan(gpu)
    assert {c.mode for c in cases if c.nominal_bytes <= gpu.graph_max_bytes} == {"eager", "graph"}
    assert {c.mode for c in cases if c.nominal_bytes > gpu.graph_max_bytes} == {"eager"}
    ids = [c.case_id(8, 1, "nccl") for c in cases]
    assert len(ids) == len(set(ids))


def test_send_recv_pairs_ranks_half_a_world_apart():
    assert [coll._peer(r, 2) for r in range(2)] == [1, 0]
    assert [coll._peer(r, 16) for r in (0, 7, 8, 15)] == [8, 15, 0, 7]  # 2 nodes x 8: across nodes
    assert [coll._peer(r, 3) for r in range(3)] == [1, 0, None]  # odd world: last rank sits out
    assert coll._peer(0, 1) is None


def test_detect_torchrun_and_slurm_environments():
    assert hdist.detect({}) is None
    tr = hdist.detect({"RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3", "MASTER_ADDR": "h", "MASTER_PORT": "29500"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.launcher) == (3, 16, 3, "torchrun")
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
             "MASTER_ADDR": "node1", "MASTER_PORT": "29400"}
    s = hdist.detect(slurm)
    assert (s.rank, s.world_size, s.local_rank, s.launcher, s.master_port) == (9, 16, 1, "slurm", 29400)
    # The batch script (no step id) is not a rank: it must not wait for 15 peers.
    assert hdist.detect({k: v for k, v in slurm.items() if k != "SLURM_STEP_ID"}) is None
    with pytest.raises(UserError, match="MASTER_ADDR"):
        hdist.detect({k: v for k, v in slurm.items() if k != "MASTER_ADDR"})


def test_bad_options_are_user_errors(tmp_path):
    class A:
        device = "cpu"
        out = str(tmp_path)
        ops = "all_reduce,broadcast"

    with pytest.raises(UserError, match="broadcast"):
        runs.options_from_args(A)
    A.ops, A.nproc_per_node = None, 0
    with pytest.raises(UserError, match="nproc"):
        runs.options_from_args(A)
    # The typed options refuse the same things when built in code (calibrate builds them).
    with pytest.raises(UserError, match="broadcast"):
        runs.CollectiveOptions("cpu", str(tmp_path), ops=("broadcast",))
    with pytest.raises(UserError, match="--timeout-s"):
        runs.CollectiveOptions("cpu", str(tmp_path), timeout_s=0.0)
    with pytest.raises(UserError, match="--out"):
        runs.CollectiveOptions("cpu", "")


def test_before_case_hook_runs_on_every_rank_before_each_case(monkeypatch):
    """The kernel's sweep calls the injected hook with (rank, index) before each case it
    measures; a world of one, gloo, in this process."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already up")
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # init_process_group reads the rendezvous from the environment
    ctx = hdist.init("cpu", 30.0, hdist.detect(env))
    try:
        cfg = coll.sweep_config("cpu", quick=True, ops=("all_reduce",), max_bytes=64)
        seen, kept = [], []
        coll.run_sweep(ctx, cfg, coll.SweepProgress(lines=False), stored=lambda cid: cid.startswith("all_reduce/eager/8B"),
                       keep=kept.append, before_case=lambda rank, i: seen.append((rank, i)))
    finally:
        hdist.destroy()
    # sizes 8 B and 64 B; the 8 B case is "stored", so one case is measured: index 0 on rank 0.
    assert seen == [(0, 0)]
    assert [r["case_id"] for r in kept] == ["all_reduce/eager/64B/w1n1/gloo"]


# --------------------------------------------------------------------------------------------
# Runs through torchrun (gloo on loopback)


def _env(**extra):
    env = dict(os.environ)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_ID", "SLURM_STEPID"):
        env.pop(name, None)  # the test starts its own worlds
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _cmd(out, *args, module=False):
    # The user's command (`inferecon bench collectives`, here as `python -m inferecon`), or the
    # module torchrun starts, which also takes --ops and --max-bytes for shorter runs.
    entry = [runs.RANKS_MODULE] if module else ["inferecon", "bench", "collectives"]
    return [sys.executable, "-m", *entry, "--device", "cpu", "--quick", "--out", str(out), *args]


def _start(out, *args, module=False, **env):
    # A session of its own so the test can signal the whole tree it started.
    return subprocess.Popen(_cmd(out, *args, module=module), env=_env(**env), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _run(out, *args, timeout=120, module=False, **env):
    proc = _start(out, *args, module=module, **env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


def _rows(out):
    from inferecon.harness.store import read_run

    manifest, tables = read_run(out)
    return manifest, tables.get("collectives")


def _stored(out) -> int:
    path = Path(out) / "collectives.parquet"
    if not path.exists():
        return 0
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows  # the file is replaced atomically: always complete


def _wait_rows(out, n, proc, limit_s=90):
    t0 = time.monotonic()
    while _stored(out) < n:
        assert proc.poll() is None, f"run ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() - t0 < limit_s, "no progress"
        time.sleep(0.05)


def _check_arithmetic(df):
    measured = df[df["skipped"] == ""]
    for r in measured.itertuples():
        samples = np.asarray(r.samples_us)
        assert len(samples) == r.reps >= 5 and (samples > 0).all()
        assert r.median_us == pytest.approx(float(np.median(samples)))
        q1, q3 = np.percentile(samples, [25, 75])
        assert r.iqr_us == pytest.approx(q3 - q1)
        assert r.noisy == bool((q3 - q1) / r.median_us > 0.10)
        assert r.algbw_gbps == pytest.approx(r.bytes / (r.median_us * 1e-6) / 1e9)
        assert r.busbw_gbps == pytest.approx(r.algbw_gbps * coll.busbw_factor(r.op, r.world_size))
    return measured


@pytest.mark.slow
def test_two_rank_gloo_run_through_torchrun(tmp_path):
    out = tmp_path / "run"
    rc, out_text, err = _run(out, "--nproc-per-node", "2", "--timeout-s", "30")
    assert rc == 0, err[-3000:]
    manifest, df = _rows(out)
    assert manifest["status"] == "complete"
    cfg = coll.sweep_config("cpu", quick=True)
    assert len(df) == len(coll.plan(cfg)) == 4 * len(cfg.sizes)
    assert df["case_id"].is_unique
    assert set(df["op"]) == set(coll.OPS) and set(df["mode"]) == {"eager"}
    assert (df["world_size"] == 2).all() and (df["nodes"] == 1).all() and (df["scope"] == "intra").all()
    assert (df["backend"] == "gloo").all() and (df["ranks_per_node"] == 2).all() and (df["gpus_per_node"] == 0).all()
    assert (df["skipped"] == "").all()
    # Sizes are powers of two divisible by n·4 B from 8 B up, so every op moves the nominal size.
    assert (df["bytes"] == df["nominal_bytes"]).all()
    ratio = (df["busbw_gbps"] / df["algbw_gbps"]).groupby(df["op"]).agg(["min", "max"])
    expected = {"all_reduce": 1.0, "all_gather": 0.5, "all_to_all": 0.5, "send_recv": 1.0}
    for op, f in expected.items():
        assert ratio.loc[op, "min"] == pytest.approx(f) and ratio.loc[op, "max"] == pytest.approx(f)
    _check_arithmetic(df)
    # Progress reaches the user; the ranks' raw output is kept in the run directory.
    assert "[collectives] 28/28" in err
    assert (out / "collectives.log").exists()
    assert "all_reduce/eager/8B/w2n1/gloo" in out_text  # bench's summary lists the cases


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_world_of_one_measures_the_fixed_cost_of_a_call(tmp_path):
    # Started as the one task of an `srun python -m inferecon bench collectives` (the variables
    # srun sets, plus the rendezvous address the batch script exports): this covers the Slurm
    # launcher and the path where the command is already inside a world.
    out = tmp_path / "one"
    world = {"SLURM_PROCID": 0, "SLURM_NTASKS": 1, "SLURM_LOCALID": 0, "SLURM_STEP_ID": 0,
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": _free_port()}
    rc, _, err = _run(out, "--timeout-s", "30", **world)
    assert rc == 0, err[-3000:]
    manifest, df = _rows(out)
    assert manifest["status"] == "complete"
    n_sizes = len(coll.sweep_config("cpu", quick=True).sizes)
    measured = df[df["op"] != "send_recv"]
    assert len(measured) == 3 * n_sizes and (measured["skipped"] == "").all() and (measured["world_size"] == 1).all()
    assert (measured["median_us"] > 0).all() and (measured["algbw_gbps"] > 0).all()
    assert (measured["busbw_gbps"] == 0).all()  # factors (n-1)/n and 2(n-1)/n are 0: no link crossed
    _check_arithmetic(measured)
    sr = df[df["op"] == "send_recv"]
    assert len(sr) == n_sizes and (sr["skipped"] == "send_recv needs two ranks").all()


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_redoing_cases(tmp_path):
    out = tmp_path / "killed"
    ops = ("--ops", "all_reduce,all_gather")
    # Rank 1 hangs before the 6th case, so the kill lands after exactly 5 stored cases.
    proc = _start(out, "--nproc-per-node", "2", "--timeout-s", "120", *ops, module=True,
                  **{runs.HANG_RANK_ENV: 1, runs.HANG_CASE_ENV: 5})
    try:
        _wait_rows(out, 5, proc)
        tree = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        # The ranks run in torchrun's sessions, not ours: they must die with their parents.
        t0 = time.monotonic()
        while any(alive(p) for p in tree) and time.monotonic() - t0 < 15:
            time.sleep(0.1)
        left = [p for p in tree if alive(p)]
    finally:
        for p in descendants(proc.pid) + [p for p in locals().get("tree", []) if alive(p)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not left, "ranks outlived the killed run"
    _, before = _rows(out)
    assert len(before) == 5

    rc, _, err = _run(out, "--nproc-per-node", "2", "--timeout-s", "30", "--resume", *ops, module=True)
    assert rc == 0, err[-3000:]
    assert "9 of 14 cases to run" in err and "(5 already stored)" in err
    manifest, after = _rows(out)
    assert manifest["status"] == "complete" and manifest.get("resumes")
    assert len(after) == 14 and after["case_id"].is_unique
    kept = after.set_index("case_id").loc[list(before["case_id"])]
    for cid, row in before.set_index("case_id").iterrows():
        assert list(kept.loc[cid, "samples_us"]) == list(row["samples_us"])  # not measured again


@pytest.mark.slow
def test_hung_rank_ends_after_the_timeout_with_one_line(tmp_path):
    # No wall-clock bound: start-up on a loaded machine takes what it takes. What ends the run
    # is shown by the message itself: the peer's call failing at --timeout-s 4 during the
    # hung case (the parent's stall backstop, 3 x 4 + 120 s, would say "no progress"), and a
    # run that never ended fails the test at the subprocess timeout.
    out = tmp_path / "hung"
    rc, _, err = _run(out, "--nproc-per-node", "2", "--timeout-s", "4", timeout=240,
                      **{runs.HANG_RANK_ENV: 1, runs.HANG_CASE_ENV: 2})
    assert rc != 0
    lines = [l for l in err.splitlines() if l.startswith("inferecon:")]
    assert len(lines) == 1, err[-3000:]
    assert "during all_reduce eager 512 B" in lines[0] and "--timeout-s 4" in lines[0]
    assert "no progress" not in lines[0]
    assert "Traceback" not in err
    manifest, df = _rows(out)
    assert len(df) == 2 and manifest["status"] == "failed"


@pytest.mark.slow
def test_no_progress_silences_the_ranks_per_case_lines(tmp_path):
    """`bench collectives --no-progress`: the ranks print no per-case line (they did, through
    the launcher, before); the start message and the summary remain."""
    out = tmp_path / "quiet"
    rc, out_text, err = _run(out, "--nproc-per-node", "2", "--timeout-s", "30", "--no-progress")
    assert rc == 0, err[-3000:]
    manifest, df = _rows(out)
    assert manifest["status"] == "complete" and len(df) == len(coll.plan(coll.sweep_config("cpu", quick=True)))
    per_case = [line for line in err.splitlines() if re.match(r"\[collectives\] \d+/\d+ ", line)]
    assert not per_case, per_case[:3]
    assert "[collectives] 28 of 28 cases to run" in err
    assert "all_reduce/eager/8B/w2n1/gloo" in out_text
    # Without the flag the same lines are there (test_two_rank_gloo_run_through_torchrun: "28/28").
    assert runs.CollectiveOptions("cpu", "x", progress=False).child_argv()[-1] == "--no-progress"
    assert "--no-progress" not in runs.CollectiveOptions("cpu", "x").child_argv()


@pytest.mark.slow
def test_ctrl_c_stops_after_saving_finished_cases(tmp_path):
    out = tmp_path / "sigint"
    proc = _start(out, "--nproc-per-node", "2", "--timeout-s", "30")
    try:
        _wait_rows(out, 3, proc)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to the foreground command
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("inferecon: interrupted")
    manifest, df = _rows(out)
    assert manifest["status"] == "interrupted"
    total = len(coll.plan(coll.sweep_config("cpu", quick=True)))
    assert 3 <= len(df) < total and df["case_id"].is_unique
    _check_arithmetic(df)


# --------------------------------------------------------------------------------------------
# GPU


def _cuda_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_gpus() < 1, reason="needs a CUDA GPU")
def test_nccl_eager_and_graph_on_available_gpus(tmp_path):
    n = min(2, _cuda_gpus())
    out = tmp_path / "gpu"
    cmd = [sys.executable, "-m", runs.RANKS_MODULE, "--device", "cuda", "--quick", "--out", str(out),
           "--nproc-per-node", str(n), "--max-bytes", str(1 << 20), "--timeout-s", "60"]
    proc = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, df = _rows(out)
    assert (df["backend"] == "nccl").all() and set(df["mode"]) == {"eager", "graph"}
    measured = _check_arithmetic(df)
    graph = measured[measured["mode"] == "graph"]
    assert len(graph) > 0 and (graph["graph_calls"] == 16).all()
    if n == 1:
        assert (df[df["op"] == "send_recv"]["skipped"] != "").all()
