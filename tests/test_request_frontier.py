"""The request frontier (`frontier --input-len I --output-len O`): speculative configurations
priced per whole request, the limits an SLA nothing meets names, the CSV's and plot's TTFT, and
the request flags' bounds. Expected values by hand (the decode step comes from terms.evaluate,
the decode model, which this file does not test)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cli_check import one_line_error
from inferecon import cli
from inferecon.core.errors import UserError
from inferecon.model.prefill import PrefillCost
from inferecon.model.catalog import resolve_model
from inferecon.model.frontier import SearchSpace
from inferecon.model.published import get_profile
from inferecon.model.request_frontier import request_frontier, request_table
from inferecon.model.terms import Layouts, evaluate
from plotcheck import assert_points_plotted


@pytest.fixture(scope="module")
def h100():
    return get_profile("h100-sxm")


def _step_s(model, hw, tp, batch, gamma, context, draft=None, acceptance=0.0):
    lay = Layouts(tp_r=1, tp_c=tp, pp=1, ep=1, micro_batch=batch, gamma=gamma)
    return float(evaluate(model, hw, lay, context, draft=draft, acceptance=acceptance).t_step_s[0])


def test_speculative_request_figures_by_hand(h100, monkeypatch):
    # Every prefill chunk costs 2 ms on the target and 0.5 ms on the draft (stubbed), so the
    # request arithmetic alone is under test. Llama 3 70B + Llama 3 8B draft at α = 0.8 on
    # 8 x H100, 20000-token prompts, 200 out, vLLM's 8192-token budget.
    calls = []

    def fake_chunk(model, hw, *, tokens, prior_tokens, tp, pp, ep, engine, last_chunk, decode_tokens, opts, tp_rows=1):
        calls.append((model.name, tp, pp, ep, decode_tokens))
        # A whole PrefillCost (prefill_plan adds every field), zero but for t_prefill_s.
        zeros = {f.name: 0 for f in dataclasses.fields(PrefillCost) if f.name not in ("level", "t_prefill_s")}
        return PrefillCost(level="roofline", t_prefill_s=2e-3 if model.name == "llama-3-70b" else 0.5e-3, **zeros)

    monkeypatch.setattr("inferecon.model.prefill.prefill_chunk", fake_chunk)
    target, draft = resolve_model("llama-3-70b"), resolve_model("llama-3-8b")
    table = request_table(target, h100, input_len=20000, output_len=200, space=SearchSpace(max_gpus=8),
                          draft=draft, acceptance=0.8)
    context = 20000 + 100
    spec = table[(table.tp == 8) & (table.tp_r == 1) & (table.pp == 1) & (table.batch == 4) & (table.gamma == 4)].iloc[0]
    # E = (1 - 0.8^5) / (1 - 0.8) = (1 - 0.32768) / 0.2 = 3.3616 tokens a round.
    assert spec.tokens_per_step == pytest.approx(3.3616)
    # The step carries 4 x 5 = 20 target tokens: chunks of 8172, so 20000 tokens take 3 chunks,
    # each prefilled by target and draft: 3 x 2.5 = 7.5 ms.
    assert spec.prefill_ms == pytest.approx(7.5)
    t = _step_s(target, h100, 8, 4, 4, context, draft, 0.8) * 1e3
    assert spec.t_decode_step_ms == pytest.approx(t)
    assert spec.ttft_ms == pytest.approx(t + 7.5)
    # TPOT: the step per 3.3616 tokens, plus 4 prefills of 7.5 ms over 200 tokens = 0.15 ms.
    assert spec.tpot_ms == pytest.approx(t / 3.3616 + 0.15)
    # $: 8 GPUs at $2/h for 200 x TPOT / 4 requests; the input share is 4 x 7.5 / (200 x TPOT).
    usd = 8 * 2.00 / 3600 * 200 * spec.tpot_ms / 1e3 / 4
    assert spec.usd_per_request == pytest.approx(usd)
    share = 4 * 7.5 / (200 * spec.tpot_ms)
    assert spec.usd_per_m_input_tokens == pytest.approx(usd * share / 20000 * 1e6)
    assert spec.usd_per_m_output_tokens == pytest.approx(usd * (1 - share) / 200 * 1e6)
    # Without speculation the same layout and batch: 4 tokens a step, chunks of 8188, 3 of
    # them at 2 ms each (no draft), spread as 4 x 6 / 200 = 0.12 ms a token.
    plain = table[(table.tp == 8) & (table.tp_r == 1) & (table.pp == 1) & (table.batch == 4) & (table.gamma == 0)].iloc[0]
    t0 = _step_s(target, h100, 8, 4, 0, context) * 1e3
    assert (plain.tokens_per_step, plain.prefill_ms) == (1.0, pytest.approx(6.0))
    assert plain.tpot_ms == pytest.approx(t0 + 0.12)
    assert plain.draft == "" and np.isnan(plain.acceptance) and spec.draft == "llama-3-8b"
    # The draft prefills on one stage at one token per sequence of the step (here b = 1 at the
    # first knot), the target with the step's 1 x 5 tokens.
    assert ("llama-3-8b", 8, 1, 1, 1) in calls and ("llama-3-70b", 8, 1, 1, 5) in calls
    # Speculation on single-stage layouts only, as in the decode search; pipelines still searched.
    assert set(table[table.gamma > 0].pp) == {1} and (table.pp > 1).any()
    assert set(table.gamma) == {0, 1, 2, 3, 4, 6, 8}


def test_sglang_request_figures_prefill_first_by_hand(h100, monkeypatch):
    # Under SGLang's prefill-first scheduler a prompt's chunks run in steps of prefill only, the
    # whole budget theirs: 20000 tokens in SGLang's 8192-token H100 budget are 3 chunks (8192,
    # 8192, 3616) of 2 ms each (stubbed), 6 ms at every batch, and none beside decode tokens.
    from inferecon.model.engine import EngineProfile

    calls = []

    def fake_chunk(model, hw, *, tokens, prior_tokens, tp, pp, ep, engine, last_chunk, decode_tokens, opts, tp_rows=1):
        calls.append((tokens, decode_tokens))
        zeros = {f.name: 0 for f in dataclasses.fields(PrefillCost) if f.name not in ("level", "t_prefill_s")}
        return PrefillCost(level="roofline", t_prefill_s=2e-3, **zeros)

    monkeypatch.setattr("inferecon.model.prefill.prefill_chunk", fake_chunk)
    m = resolve_model("llama-3-70b")
    table = request_table(m, h100, input_len=20000, output_len=200, space=SearchSpace(max_gpus=8),
                          engine=EngineProfile(name="sglang"))
    row = table[(table.tp == 8) & (table.tp_r == 1) & (table.pp == 1) & (table.batch == 16)].iloc[0]
    assert row.chunk_tokens == 8192 and set(calls) == {(8192, 0), (3616, 0)}
    assert row.prefill_ms == pytest.approx(6.0)
    # TTFT: the decode step SGLang's overlap scheduler launched ahead, then the prefill steps; the 16
    # requests' decode waits through each other's: 16 x 6 ms over 200 tokens = 0.48 ms a token on
    # top of the decode step.
    t = float(evaluate(m, h100, Layouts(tp_r=1, tp_c=8, pp=1, ep=1, micro_batch=16), 20100,
                       engine=EngineProfile(name="sglang")).t_step_s[0]) * 1e3
    assert row.ttft_ms == pytest.approx(t + 6.0)
    assert row.tpot_ms == pytest.approx(t + 0.48)


def test_no_draft_no_speculation_and_budget_bounds_the_step(h100):
    m = resolve_model("llama-3-8b")
    table = request_table(m, h100, input_len=1000, output_len=100, space=SearchSpace(max_gpus=2), chunk_tokens=256)
    assert set(table.gamma) == {0} and set(table.tokens_per_step) == {1.0}
    # A step may take at most half of a 256-token budget: batches of up to 128.
    assert table.batch.max() == 128


def _hand_table():
    # Four configurations on 1 GPU (tp 1): A fast prefill, slow decode; B the reverse; C between;
    # D slower and dearer than C (dominated).
    return pd.DataFrame(dict(
        name=list("ABCD"), tp=[1, 2, 4, 4], pp=1, ep=1, n_gpu=[1, 2, 4, 4], batch=[8, 4, 2, 1], gamma=[0, 0, 3, 0],
        draft=["", "", "d", ""], ttft_ms=[50.0, 200.0, 120.0, 130.0], tpot_ms=[30.0, 10.0, 15.0, 20.0],
        usd_per_request=[1.0, 4.0, 2.0, 3.0])).assign(tokens_per_s_per_seq=lambda d: 1e3 / d.tpot_ms)


def test_sla_frontier_and_binding_limits_by_hand():
    t = _hand_table()
    # TTFT <= 150: A, C and D meet it; D (TPOT 20, $3) is beaten by C (TPOT 15, $2).
    assert list(request_frontier(t, ttft_ms=150).name) == ["C", "A"]
    # TTFT <= 40: nothing (fastest 50 ms); closest A (50 / 40 = 1.25 of the limit).
    with pytest.raises(UserError, match=r"^no configuration meets TTFT <= 40 ms \(the fastest prefill is 50\.0 ms\); "
                                        r"closest: tp 1, pp 1, ep 1 on 1 GPUs, batch 8: TTFT 50\.0 ms, TPOT 30\.00 ms$"):
        request_frontier(t, ttft_ms=40)
    # TPOT <= 5: nothing (fastest 10 ms); closest B.
    with pytest.raises(UserError, match=r"TPOT <= 5 ms \(the fastest decode is 10\.00 ms\); closest: tp 2, .* batch 4:"):
        request_frontier(t, tpot_ms=5)
    # TTFT <= 100 with TPOT <= 20: A meets the first, B and C the second, none both. Worst
    # ratios: A max(0.5, 1.5) = 1.5, B max(2, 0.5) = 2, C max(1.2, 0.75) = 1.2, D max(1.3, 1) =
    # 1.3: C is closest, a speculative configuration, named with its draft.
    with pytest.raises(UserError, match=r"together \(each alone is met, never both\); closest: tp 4, pp 1, ep 1 on 4 "
                                        r"GPUs, batch 2, γ 3 with draft d: TTFT 120\.0 ms, TPOT 15\.00 ms"):
        request_frontier(t, ttft_ms=100, tpot_ms=20)


def test_cli_sla_nothing_meets_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, ["frontier", "--model", "llama-3-8b", "--input-len", "2000", "--output-len", "100",
                                   "--ttft-ms", "1", "--draws", "0", "--max-gpus", "2", "--out", str(tmp_path)])
    assert line.startswith("inferecon: error: --ttft-ms 1: no configuration meets TTFT <= 1 ms") and "closest: tp" in line


def test_cli_request_plot_shows_ttft_and_limits(tmp_path, capsys, saved_figures):
    assert cli.main(["frontier", "--model", "llama-3-8b", "--input-len", "1000", "--output-len", "100",
                     "--ttft-ms", "30", "--tpot-ms", "20", "--draws", "0", "--max-gpus", "4",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "request_frontier.csv" in out and "request_frontier.png" in out
    df = pd.read_csv(tmp_path / "request_frontier.csv")
    assert {"ttft_ms", "tpot_ms", "usd_per_m_input_tokens", "usd_per_m_output_tokens", "usd_per_request",
            "gamma", "profile_label"} <= set(df.columns)
    assert len(df) > 1 and (df.ttft_ms <= 30).all() and (df.tpot_ms <= 20).all()
    # The two prices are the request's cost split: I x $/M in + O x $/M out = $ per request.
    assert ((1000 * df.usd_per_m_input_tokens + 100 * df.usd_per_m_output_tokens) / 1e6).tolist() == pytest.approx(
        df.usd_per_request.tolist())
    frontier_fig, fig = saved_figures
    cost_ax, ttft_ax = fig.axes
    assert "TTFT" in ttft_ax.get_ylabel() or "first token" in ttft_ax.get_ylabel()
    assert_points_plotted(SimpleNamespace(axes=[cost_ax]), df.tokens_per_s_per_seq, df.usd_per_m_requests)
    assert_points_plotted(SimpleNamespace(axes=[ttft_ax]), df.tokens_per_s_per_seq, df.ttft_ms)
    # The limits drawn: TPOT 20 ms is 50 tokens/s, a vertical line on both panels; TTFT 30 ms
    # a horizontal one on the TTFT panel.
    def lines(ax, axis, value):
        return [ln for ln in ax.get_lines() if np.allclose(getattr(ln, f"get_{axis}data")(), value)]

    assert lines(cost_ax, "x", 50.0) and lines(ttft_ax, "x", 50.0) and lines(ttft_ax, "y", 30.0)


def test_cli_speculative_request_frontier(tmp_path, capsys):
    assert cli.main(["frontier", "--model", "llama-3-70b", "--spec-decode", "llama-3-8b", "--acceptance", "0.8",
                     "--input-len", "2000", "--output-len", "200", "--draws", "0", "--max-gpus", "8",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "+ llama-3-8b draft (α=0.8): requests of 2000 tokens in" in out
    df = pd.read_csv(tmp_path / "request_frontier.csv")
    # At a 0.8 acceptance speculation wins the fast end: the fastest request point drafts.
    assert df.iloc[0].gamma > 0 and df.iloc[0].draft == "llama-3-8b"


def test_cli_no_latency_request_frontier_keeps_splittable_heads(tmp_path, capsys):
    # --no-latency lets tp exceed the heads; the prefill splits heads evenly, so those layouts
    # are left out of the request search (was: "--tp 64: ... more than 32 attention heads").
    # A 2D grid splits the heads over its rows only, so tp 64 as 8 x 8 is kept: the heads'
    # axis (the rows in 2D, the whole group in 1D) is what must stay within 32.
    assert cli.main(["frontier", "--model", "llama-3-8b", "--no-latency", "--input-len", "100", "--output-len", "10",
                     "--draws", "0", "--max-gpus", "64", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "request_frontier.csv")
    axis = df.tp_r.where(df.tp_r > 1, df.tp)
    assert axis.max() <= 32


@pytest.mark.parametrize("argv, says", [
    (["--disaggregated", "0,2"], "argument --disaggregated: must be from 1 to 65,536, got 0"),
    (["--disaggregated", "2,3,4"], "argument --disaggregated: expected P,D"),
    (["--disaggregated", "2,x"], "argument --disaggregated: must be a whole number from 1 to 65,536"),
])
def test_disaggregated_counts_use_the_bounded_parser(capsys, argv, says):
    line = one_line_error(capsys, ["predict", "--model", "llama-3-8b", "--input-len", "100", "--output-len", "10",
                                   "--request-rate", "1", "--draws", "0", *argv])
    assert says in line


@pytest.mark.parametrize("flag, value", [("--ttft-ms", "0"), ("--tpot-ms", "nan"), ("--chunk-size", "1"),
                                         ("--input-len", "0")])
def test_frontier_request_flags_bounded(capsys, tmp_path, flag, value):
    line = one_line_error(capsys, ["frontier", "--model", "llama-3-8b", "--input-len", "10", "--output-len", "10",
                                   flag, value, "--out", str(tmp_path)])
    assert f"argument {flag}" in line


def test_trtllm_request_frontier_reserves_whole_requests(h100):
    # Llama 3 8B bf16 on one H100, 1000 in / 1000 out (tests/test_serving.py's hand figures):
    # TensorRT-LLM holds 0.9 x (80 - 16.06) GB / (131072 B x 2000) = 219.5 requests, vLLM's rule
    # (72 - 16.06) GB / (131072 B x 1500) = 284.5. On the batch grid (... 128, 181, 256, 362 ...)
    # the largest one-GPU batch is 181 with a TensorRT-LLM profile and 256 without.
    from inferecon.model.engine import EngineProfile
    m = resolve_model("llama-3-8b")
    space = SearchSpace(max_gpus=1)
    trt = request_table(m, h100, input_len=1000, output_len=1000, space=space, engine=EngineProfile(name="trtllm"))
    plain = request_table(m, h100, input_len=1000, output_len=1000, space=space)
    assert trt.batch.max() == 181
    assert plain.batch.max() == 256
