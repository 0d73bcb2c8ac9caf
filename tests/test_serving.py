"""Serving workloads (model/serving.py): queueing, interference and disaggregation by hand."""

import pytest

from inferecon.core.errors import UserError
from inferecon.model.catalog import resolve_model
from inferecon.model.prefill import prefill_time_s
from inferecon.model.published import get_profile
from inferecon.model.serving import (Deployment, default_chunk_tokens, kv_transfer_s, md1_wait_s, mean_tpot_s,
                                     serve, serve_disaggregated)


@pytest.fixture(scope="module")
def llama8b():
    return resolve_model("llama-3-8b")


@pytest.fixture(scope="module")
def h100():
    return get_profile("h100-sxm")


def test_md1_wait_by_textbook_formula():
    # M/D/1 mean number waiting (Kleinrock vol. 1, Pollaczek-Khinchine with E[S²] = S²):
    # Lq = ρ² / (2(1 − ρ)); Little's law Wq = Lq / λ. λ = 0.5/s, S = 1 s: ρ = 0.5,
    # Lq = 0.25 / 1 = 0.25, Wq = 0.25 / 0.5 = 0.5 s.
    assert md1_wait_s(0.5, 1.0) == pytest.approx(0.5)
    # λ = 8/s, S = 0.1 s: ρ = 0.8, Lq = 0.64 / 0.4 = 1.6, Wq = 1.6 / 8 = 0.2 s.
    assert md1_wait_s(8.0, 0.1) == pytest.approx(0.2)
    with pytest.raises(UserError, match="queue grows without bound"):
        md1_wait_s(10.0, 0.1)


def test_mean_tpot_by_hand():
    # Half the time in 100 ms mixed steps (5 steps/s), half in 10 ms decode steps (50 steps/s):
    # 55 steps per second, so 1/55 s = 18.18 ms per token.
    assert mean_tpot_s(0.5, 0.1, 0.01) == pytest.approx(1 / 55)
    assert mean_tpot_s(0.0, 0.1, 0.01) == pytest.approx(0.01)


def test_vllm_default_token_budget(h100):
    # vllm/engine/arg_utils.py (0.32): H100 80 GB -> 8192, A100 -> 2048, >= 160 GiB -> 16384.
    assert default_chunk_tokens(h100) == 8192
    assert default_chunk_tokens(get_profile("a100-80gb")) == 2048


def test_single_client_sees_no_queue(llama8b, h100):
    r = serve(llama8b, h100, input_len=2048, output_len=128, concurrency=1)
    # One client: nothing is ever ahead of its prompt; its TTFT is its own prefill (the
    # decode batch is below one request) plus half a step in flight.
    assert r.ttft_queue_s == 0.0
    alone = prefill_time_s(llama8b, h100, input_len=2048)
    assert alone * 0.9 <= r.ttft_s <= alone * 1.3
    # Little's law for the closed loop: one request in the system all the time.
    assert r.request_rate_per_s * r.request_latency_s == pytest.approx(1.0, rel=1e-3)


def test_lone_client_tpot_has_no_prefill_in_it(llama8b, h100):
    # One client never decodes while a prompt is prefilled: its own prompt is its TTFT, and there
    # is no other. So its TPOT is the bare batch-1 decode step, however long the prompt (a
    # 16000-token prompt once priced the lone client's own prefill into its TPOT, ~1.9x).
    for input_len in (500, 16000):
        r = serve(llama8b, h100, input_len=input_len, output_len=200, concurrency=1)
        assert r.tpot_s == pytest.approx(r.t_decode_step_s, rel=1e-9)
    # Two clients whose prompts do not share a step: each sees the other's prefill only.
    two = serve(llama8b, h100, input_len=16000, output_len=200, concurrency=2)
    assert two.tpot_s > two.t_decode_step_s * 1.01


def test_prefill_interference_raises_tpot_with_load(llama8b, h100):
    low = serve(llama8b, h100, input_len=4096, output_len=256, request_rate_per_s=0.5)
    high = serve(llama8b, h100, input_len=4096, output_len=256, request_rate_per_s=6.0)
    assert high.prefill_utilisation > low.prefill_utilisation
    assert high.tpot_s > high.t_decode_step_s  # chunks stretch the steps they ride in
    assert high.ttft_queue_s > low.ttft_queue_s
    assert high.decode_batch > low.decode_batch
    # Steady state obeys Little's law: B = λ (O − 1) TPOT.
    assert high.decode_batch == pytest.approx(6.0 * 255 * high.tpot_s, rel=1e-3)


def test_rate_beyond_capacity_is_one_line(llama8b, h100):
    with pytest.raises(UserError, match="queue grows without bound"):
        serve(llama8b, h100, input_len=8192, output_len=128, request_rate_per_s=200.0)


def test_disaggregated_kv_transfer_by_hand(llama8b, h100):
    # Llama 3 8B KV per token: 32 layers · 2 · 8 heads · 128 · 2 B = 131,072 B; 2048 tokens:
    # 268,435,456 B from one prefill GPU over NVLink (450 GB/s datasheet): at least 0.6 ms.
    t = kv_transfer_s(llama8b, h100, 2048, Deployment(1), same_node=True)
    assert 268_435_456 / 450e9 <= t <= 268_435_456 / 450e9 * 1.6
    across = kv_transfer_s(llama8b, h100, 2048, Deployment(1), same_node=False)
    assert across > t  # one NIC's share of the network is slower than NVLink
    r = serve_disaggregated(llama8b, h100, input_len=2048, output_len=256, request_rate_per_s=4.0,
                            prefill=Deployment(1), prefill_instances=1, decode=Deployment(1), decode_instances=1)
    assert r.tpot_s == pytest.approx(r.t_decode_step_s)  # no prefill in decode steps
    assert r.ttft_s == pytest.approx(r.ttft_queue_s + r.prefill_service_s + r.kv_transfer_s)
    assert r.n_gpu == 2


def test_bad_workloads_are_one_line(llama8b, h100):
    with pytest.raises(UserError, match="either a request rate or a concurrency"):
        serve(llama8b, h100, input_len=10, output_len=10)
    with pytest.raises(UserError, match="output len"):
        serve(llama8b, h100, input_len=10, output_len=0, concurrency=1)
    with pytest.raises(UserError, match="KV cache"):
        serve(llama8b, h100, input_len=1_000_000, output_len=1000, concurrency=4)  # 131 GB of KV for one


def test_clients_beyond_the_kv_cache_wait_for_a_slot(llama8b, h100):
    # 20,000 + 2,000 tokens: the mean decoding context 21,000 · 131,072 B = 2.75 GB of KV per
    # request; 72 GB usable − 16.1 GB of weights = 55.9 GB: room for 20 requests. At 50 clients
    # 30 wait; their wait is 30 / λ by Little's law.
    r20 = serve(llama8b, h100, input_len=20_000, output_len=2_000, concurrency=20)
    r50 = serve(llama8b, h100, input_len=20_000, output_len=2_000, concurrency=50)
    assert r50.decode_batch == pytest.approx(r20.decode_batch, rel=0.02)
    assert r50.ttft_s - r20.ttft_s == pytest.approx(30 / r50.request_rate_per_s, rel=0.02)


def test_closed_loop_simulation_single_client_by_hand(llama8b, h100):
    from inferecon.model.serving import simulate_closed_loop

    # One client, 2048 in / 64 out: every request prefills alone (2048 < 8192 tokens: one step
    # of prefill only), then 63 decode steps of batch 1. TTFT = the lone prefill exactly.
    run = simulate_closed_loop(llama8b, h100, input_len=2048, output_len=64, concurrency=1)
    assert run.requests == 10
    assert run.ttft_mean_s == pytest.approx(prefill_time_s(llama8b, h100, input_len=2048), rel=1e-9)
    lone = serve(llama8b, h100, input_len=2048, output_len=64, concurrency=1)
    assert run.tpot_mean_s == pytest.approx(lone.t_decode_step_s, rel=0.02)


def test_closed_loop_simulation_burst_by_hand(llama8b, h100):
    from inferecon.model.prefill import prefill_chunk, prefill_step
    from inferecon.model.serving import simulate_closed_loop

    # Two clients, 6000-token prompts, budget 8192, one round measured (no re-issue): both
    # start at 0; step 1 prefills client A's 6000 and the first 2192 of B's (one packed step of
    # 8192 tokens, with the step's overheads once); step 2 (nothing decoding: output 1 ends A
    # with its first token) B's last 3808. A's TTFT = step 1, B's = step 1 + step 2.
    run = simulate_closed_loop(llama8b, h100, input_len=6000, output_len=1, concurrency=2, chunk_tokens=8192,
                               warmup_rounds=0, measured_rounds=1)
    assert run.requests == 2
    step1 = prefill_step(llama8b, h100, chunks=[(6000, 0, True), (2192, 0, False)]).t_prefill_s
    step2 = prefill_chunk(llama8b, h100, tokens=3808, prior_tokens=2192).t_prefill_s
    assert run.ttft_mean_s == pytest.approx((step1 + (step1 + step2)) / 2, rel=1e-9)
    # TensorRT-LLM's default (context chunking off): B's prompt does not fit beside A's whole,
    # so step 1 is A's 6000 alone and step 2 B's 6000 alone.
    whole = simulate_closed_loop(llama8b, h100, input_len=6000, output_len=1, concurrency=2, chunk_tokens=8192,
                                 warmup_rounds=0, measured_rounds=1, scheduler="whole")
    alone = prefill_chunk(llama8b, h100, tokens=6000).t_prefill_s
    assert whole.ttft_mean_s == pytest.approx((alone + 2 * alone) / 2, rel=1e-9)


def test_prompts_sharing_a_step_are_one_packed_gemm(llama8b, h100):
    from inferecon.model.prefill import prefill_chunk, prefill_step

    # Forty 200-token prompts in one step: the weight GEMMs see 8000 packed rows, as one
    # 8000-token prompt does (same GEMM FLOPs); attention is each prompt's own causal square:
    # 4 FLOP x 32 heads x 128 dims per (query, key) pair x 40 x 200 x 100 pairs x 32 layers.
    batch = prefill_step(llama8b, h100, chunks=[(200, 0, True)] * 40)
    one = prefill_chunk(llama8b, h100, tokens=8000, last_chunk=False)
    lm_rows = 2.0 * 40 * llama8b.vocab_size * llama8b.d_model  # 40 logits rows (one per prompt) against 0
    assert batch.gemm_flops_per_gpu == pytest.approx(one.gemm_flops_per_gpu + lm_rows, rel=1e-9)
    assert batch.flops_per_gpu - batch.gemm_flops_per_gpu == pytest.approx(4 * 32 * 128 * 40 * 200 * 100 * 32,
                                                                           rel=1e-9)
    # Priced one by one beside a decode batch, each 200-row GEMM would look almost free.
    apart = 40 * prefill_chunk(llama8b, h100, tokens=200, decode_tokens=8).t_prefill_s
    assert prefill_step(llama8b, h100, chunks=[(200, 0, True)] * 40, decode_tokens=8).t_prefill_s > 2 * apart


def test_predict_cli_request_figures(capsys):
    import json

    from inferecon import cli

    assert cli.main(["predict", "--model", "llama-3-8b", "--input-len", "2048", "--output-len", "256",
                     "--draws", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[0])
    req = d["request"]
    # Lone prompt: TTFT is the prefill; $/M input = 1 GPU x $2.00/h x TTFT / 2048 tokens.
    assert req["ttft_ms"] == pytest.approx(req["prefill_ms"])
    assert req["usd_per_m_input_tokens"] == pytest.approx(2.00 / 3600 * req["ttft_ms"] / 1e3 / 2048 * 1e6, rel=1e-9)
    assert d["context"] == 2048 + 128  # decode context defaults to input + output / 2
    assert req["request_latency_s"] == pytest.approx(req["ttft_ms"] / 1e3 + 255 * req["tpot_ms"] / 1e3)
    assert cli.main(["predict", "--model", "llama-3-8b", "--input-len", "5000", "--output-len", "500",
                     "--concurrency", "25", "--draws", "0"]) == 0
    out = capsys.readouterr().out
    assert "25 concurrent clients" in out and "TTFT" in out and "M/D/1" in out


def test_predict_cli_bad_requests_are_one_line(capsys):
    from cli_check import one_line_error

    assert "queue grows without bound" in one_line_error(
        capsys, ["predict", "--model", "llama-3-8b", "--input-len", "8192", "--output-len", "10",
                 "--request-rate", "500", "--draws", "0"])
    assert "--input-len" in one_line_error(capsys, ["predict", "--model", "llama-3-8b", "--concurrency", "4"])


def test_request_frontier_limits_and_binding_sla(h100):
    from inferecon.model.frontier import SearchSpace
    from inferecon.model.request_frontier import request_frontier, request_table

    m = resolve_model("llama-3-70b")
    table = request_table(m, h100, input_len=2000, output_len=200, space=SearchSpace(max_gpus=16))
    front = request_frontier(table, ttft_ms=300, tpot_ms=30)
    assert (front.ttft_ms <= 300).all() and (front.tpot_ms <= 30).all()
    # $ per request by hand for the first row: n_gpu GPUs x $2.00/h for O x TPOT / batch seconds.
    r = front.iloc[0]
    assert r.usd_per_request == pytest.approx(r.n_gpu * 2.00 / 3600 * 200 * r.tpot_ms / 1e3 / r.batch)
    # Prefill of 2000 tokens of a 70B model: 2 · 70.55e9 · 2000 = 2.8e14 FLOP, at 692 TFLOP/s
    # per GPU over 16 GPUs at best 25 ms: a 10 ms TTFT is out of reach, and the error says so.
    with pytest.raises(UserError, match=r"no configuration meets TTFT <= 10 ms.*closest: tp"):
        request_frontier(table, ttft_ms=10)


def test_frontier_cli_request_flags(capsys, tmp_path):
    from cli_check import one_line_error
    from inferecon import cli

    assert cli.main(["frontier", "--model", "llama-3-8b", "--input-len", "1000", "--output-len", "100",
                     "--tpot-ms", "20", "--draws", "0", "--max-gpus", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "requests of 1000 tokens in, 100 out (TPOT <= 20 ms" in out
    assert (tmp_path / "request_frontier.csv").exists()
    assert "--input-len" in one_line_error(capsys, ["frontier", "--model", "llama-3-8b", "--ttft-ms", "100",
                                                    "--out", str(tmp_path)])


def test_engine_results_carry_ttft():
    from pathlib import Path

    from inferecon.ingest.engine_results import read_engine_results

    here = Path(__file__).parent / "fixtures" / "engines"
    # The fixture's own fields: "mean_ttft_ms": 60.9, "median_ttft_ms": 58.0.
    run = read_engine_results(here / "vllm_bench_serve_llama-3.1-8b_c8.json")[0]
    assert (run.ttft_mean_ms, run.ttft_median_ms) == (60.9, 58.0)
    # trtllm-bench's report states no TTFT here: None, not zero.
    assert read_engine_results(here / "trtllm_bench_llama-3.1-70b_tp4_report.json")[0].ttft_mean_ms is None


def test_predict_cli_disaggregated(capsys):
    import json

    from cli_check import one_line_error
    from inferecon import cli

    assert cli.main(["predict", "--model", "llama-3-70b", "--tp", "2", "--precision", "8", "--input-len", "4000",
                     "--output-len", "400", "--request-rate", "2", "--disaggregated", "2,2", "--prefill-tp", "4",
                     "--draws", "0", "--json"]) == 0
    req = json.loads(capsys.readouterr().out.splitlines()[0])["request"]
    assert req["load"] == "disaggregated"
    # 2 prefill instances x 4 GPUs + 2 decode instances x 2 GPUs = 12 GPUs; 2 req/s x 400 tokens / 12.
    assert req["output_tokens_per_s_per_gpu"] == pytest.approx(2 * 400 / 12)
    assert "12 GPUs in all" in req["queue_model"]
    assert "--request-rate" in one_line_error(capsys, ["predict", "--model", "llama-3-70b", "--input-len", "10",
                                                       "--output-len", "10", "--disaggregated", "1,1"])


def test_a_rate_far_beyond_capacity_blames_the_rate_not_the_chunk(capsys):
    # 100,000 requests/s of 1000 + 100 tokens on one H100 with Llama 3 8B: even at one lone decode
    # step per token (~1 ms here) that keeps tens of thousands of requests decoding, far beyond
    # the KV cache's room (a few hundred at 1050 tokens): the queue grows without bound, whatever
    # the chunk size.
    from inferecon.cli import main

    assert main(["predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--input-len", "1000",
                 "--output-len", "100", "--request-rate", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inferecon: error: --request-rate") and "grows without bound" in err[0]


def test_bunch_size_by_hand():
    from inferecon.model.serving import bunch_size

    assert bunch_size(25, 200, 8192) == 25  # 25 x 200 = 5000 tokens: one step holds them all
    assert bunch_size(50, 200, 8192) == 25  # 40 fit a step -> 2 bunches of 25
    assert bunch_size(100, 1000, 8000) == 8  # 8 fit -> 13 bunches, 100 / 13 = 7.7
    assert bunch_size(25, 5000, 8192) == 1  # one prompt per step
    assert bunch_size(1, 200, 8192) == 1


def test_engine_default_scheduler():
    from inferecon.model.serving import engine_scheduler

    assert engine_scheduler("trtllm") == "whole"
    assert engine_scheduler("nim") == "whole"  # NIM's LLM containers run TensorRT-LLM
    assert engine_scheduler("vllm") == "chunked"
    assert engine_scheduler(None) == "chunked"


def test_closed_loop_prompts_share_a_packed_step(llama8b, h100):
    from inferecon.model.prefill import prefill_step

    # 25 clients of 200-token prompts all start together and stay in one bunch: each TTFT
    # includes the step that prefills all 25 (5000 packed tokens), not a lone 200-token chunk.
    r = serve(llama8b, h100, input_len=200, output_len=200, concurrency=25)
    packed = prefill_step(llama8b, h100, chunks=[(200, 0, True)] * 25, decode_tokens=24).t_prefill_s
    lone = prefill_time_s(llama8b, h100, input_len=200)
    assert r.ttft_s > packed > 10 * lone
    assert "25 at a time" in r.queue_model


def test_closed_loop_formula_and_simulation_agree_on_bunches(llama8b, h100):
    from inferecon.model.serving import simulate_closed_loop

    for c in (25, 50):
        r = serve(llama8b, h100, input_len=200, output_len=200, concurrency=c)
        sim = simulate_closed_loop(llama8b, h100, input_len=200, output_len=200, concurrency=c, scheduler="whole",
                                   measured_rounds=4)
        assert r.ttft_s == pytest.approx(sim.ttft_mean_s, rel=0.25)
        assert r.tpot_s == pytest.approx(sim.tpot_mean_s, rel=0.10)


def test_simulation_refuses_an_unknown_scheduler(llama8b, h100):
    from inferecon.core.errors import RequestError
    from inferecon.model.serving import simulate_closed_loop

    with pytest.raises(RequestError, match="scheduler"):
        simulate_closed_loop(llama8b, h100, input_len=200, output_len=20, concurrency=2, scheduler="fifo")


def test_simulated_client_turnaround_by_hand(llama8b, h100):
    from inferecon.core.errors import RequestError
    from inferecon.model.serving import simulate_closed_loop

    # One client whose next request reaches the engine 5 ms after the last one ends: the engine
    # is idle meanwhile, so TTFT is still the lone prefill and each cycle is 5 ms longer.
    base = simulate_closed_loop(llama8b, h100, input_len=2048, output_len=64, concurrency=1)
    slow = simulate_closed_loop(llama8b, h100, input_len=2048, output_len=64, concurrency=1, turnaround_s=0.005)
    assert slow.ttft_mean_s == pytest.approx(base.ttft_mean_s, rel=1e-9)
    assert 1.0 / slow.request_rate_per_s == pytest.approx(1.0 / base.request_rate_per_s + 0.005 * 11 / 12, rel=1e-6)
    with pytest.raises(RequestError, match="turnaround"):
        simulate_closed_loop(llama8b, h100, input_len=200, output_len=20, concurrency=2, turnaround_s=-1.0)


def test_kv_budget_rules_by_hand():
    from inferecon.model.serving import KvAdmission, kv_budget_bytes
    trt = KvAdmission("trt", 0.9, True, True)
    vllm = KvAdmission("vllm", 0.9, False, False)
    # 80 GB of HBM, 16 GB of weights: TensorRT-LLM takes 0.9 of the 64 GB left = 57.6 GB;
    # vLLM takes 0.9 of all 80 GB = 72 GB, less the weights = 56 GB.
    assert kv_budget_bytes(80e9, 16e9, trt) == pytest.approx(57.6e9)
    assert kv_budget_bytes(80e9, 16e9, vllm) == pytest.approx(56e9)
    assert kv_budget_bytes(80e9, 79e9, vllm) == 0.0  # weights past 90% of HBM leave no cache


def test_kv_admission_by_engine():
    from inferecon.model.serving import kv_admission
    for name in ("trtllm", "nim", "TensorRT-LLM"):
        a = kv_admission(name)
        assert (a.fraction, a.of_free, a.reserve_whole) == (0.9, True, True)
    for name in ("vllm", "sglang", None):
        a = kv_admission(name)
        assert (a.fraction, a.of_free, a.reserve_whole) == (0.9, False, False)


def test_trtllm_slots_reserve_the_whole_request(llama8b, h100):
    # Llama 3 8B at 16-bit: KV per token = 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 B
    # = 131072 B; weights (config.json: embed and untied head 2 x 128256 x 4096, 32 layers of
    # attention 2 x 4096^2 (q, o) + 2 x 4096 x 1024 (k, v) and MLP 3 x 4096 x 14336) ~ 8.03e9
    # params = 16.06 GB. I = O = 1000.
    # TensorRT-LLM: 0.9 x (80 - 16.06) GB / (131072 B x 2000 tokens) = 219.5 slots.
    # vLLM: (72 - 16.06) GB / (131072 B x 1500 tokens, the mean context) = 284.5 slots.
    from inferecon.model.prefill import PrefillOptions
    from inferecon.model.serving import _Instance, kv_admission
    from inferecon.model.terms import CostOptions
    dep = Deployment(1, 1, 1)
    trt = _Instance(llama8b, h100, dep, None, 1500, 8, CostOptions(), PrefillOptions(), kv_admission("trtllm"), 2000)
    vll = _Instance(llama8b, h100, dep, None, 1500, 8, CostOptions(), PrefillOptions(), kv_admission("vllm"))
    assert trt.max_batch_fitting() == pytest.approx(219.5, rel=0.005)
    assert vll.max_batch_fitting() == pytest.approx(284.5, rel=0.005)


def test_closed_loop_beyond_trtllm_slots_keeps_littles_law(llama8b, h100):
    # 300 clients of 1000/1000 on TensorRT-LLM's rule: 219 slots (above) run, the other 81
    # wait. In service, Little's law: rate x (latency - slot wait) = 219; the wait itself is
    # 81 / rate (Little's law on the waiting room).
    from inferecon.model.engine import EngineProfile
    r = serve(llama8b, h100, input_len=1000, output_len=1000, concurrency=300, engine=EngineProfile(name="trtllm"))
    slot_wait = 81 / r.request_rate_per_s
    assert r.request_rate_per_s * (r.request_latency_s - slot_wait) == pytest.approx(219, rel=0.01)
    assert "81 clients wait for one of 219 KV-cache slots (TensorRT-LLM" in r.queue_model
    v = serve(llama8b, h100, input_len=1000, output_len=1000, concurrency=300, engine=EngineProfile(name="vllm"))
    assert v.decode_batch > r.decode_batch  # vLLM's rule holds more of the 300 in service


def test_validate_ttft_uses_the_runs_engine_kv_rule(llama8b, h100):
    # validate --engine-results: a TensorRT-LLM run of 300 clients at 1000/1000 has 219 slots
    # (test above), a vLLM run 284: 81 against 16 clients wait for a slot, so its TTFT is longer.
    from types import SimpleNamespace
    from inferecon.validation.ttft import ttft_rows

    def case(engine):
        run = SimpleNamespace(source=engine, engine=engine, concurrency=300.0, input_len=1000.0, output_len=1000.0,
                              ttft_mean_ms=1000.0, ttft_median_ms=None, tpot_ms=10.0)
        return SimpleNamespace(run=run, model=llama8b, hw=h100, tp=1, pp=1, ep=1)

    trt, vllm = ttft_rows([case("trtllm"), case("vllm")])
    assert trt["pred_ttft_ms"] > vllm["pred_ttft_ms"] > 0


def test_multi_step_rounds_delay_a_poisson_prompt_by_half_a_round(llama8b, h100):
    # vLLM V0's --num-scheduler-steps 10 schedules once every 10 decode steps (vllm#8378): a Poisson
    # arrival waits for the round it lands in, 10 steps long, half of it on average, where it waited
    # half a step with one step per round. So TTFT rises by (10 - 1) / 2 = 4.5 decode steps, and
    # nothing else moves (the decode batch, TPOT and the prefill queue do not see the admission time).
    one = serve(llama8b, h100, input_len=230, output_len=194, request_rate_per_s=4.0)
    ten = serve(llama8b, h100, input_len=230, output_len=194, request_rate_per_s=4.0, scheduler_steps=10)
    assert ten.ttft_s - one.ttft_s == pytest.approx(4.5 * one.t_decode_step_s, rel=1e-9)
    assert (ten.tpot_s, ten.decode_batch, ten.ttft_queue_s) == (one.tpot_s, one.decode_batch, one.ttft_queue_s)
    assert ten.scheduler_steps == 10 and one.scheduler_steps == 1
    # The answer says where the time went: TTFT = queue + prefill + the half round it names.
    assert f"half a round, {5 * ten.t_decode_step_s * 1e3:.1f} ms" in ten.queue_model
    assert ten.ttft_s == pytest.approx(ten.ttft_queue_s + ten.prefill_service_s + 5 * ten.t_decode_step_s, rel=1e-12)
    # An 8B decode step on an H100 is ~6-7 ms (16 GB of weights at ~2.6 TB/s plus the per-step
    # costs), so ten steps add ~30 ms to a ~25 ms TTFT: the size of vLLM 0.6.0's measured 100 ms
    # against the one-step model's 25 ms on sglang's benchmark_vllm_060 (an A100 there).
    assert 0.004 < one.t_decode_step_s < 0.010
    # A closed loop's next prompt follows a completion onto a round's boundary: no change.
    c1 = serve(llama8b, h100, input_len=230, output_len=194, concurrency=8)
    c10 = serve(llama8b, h100, input_len=230, output_len=194, concurrency=8, scheduler_steps=10)
    assert c10.ttft_s == c1.ttft_s
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="scheduler steps must be a whole number"):
            serve(llama8b, h100, input_len=230, output_len=194, request_rate_per_s=4.0, scheduler_steps=bad)


def test_predict_cli_scheduler_steps(capsys):
    import json

    from cli_check import one_line_error
    from inferecon import cli

    base = ["predict", "--model", "llama-3-8b", "--input-len", "230", "--output-len", "194", "--draws", "0", "--json"]
    assert cli.main(base + ["--request-rate", "4"]) == 0
    one = json.loads(capsys.readouterr().out.splitlines()[0])["request"]
    assert cli.main(base + ["--request-rate", "4", "--scheduler-steps", "10"]) == 0
    ten = json.loads(capsys.readouterr().out.splitlines()[0])["request"]
    assert ten["ttft_ms"] - one["ttft_ms"] == pytest.approx(4.5 * one["tpot_ms"], rel=0.05)
    assert "--scheduler-steps applies to an aggregated load" in one_line_error(capsys, base + ["--scheduler-steps", "10"])
    assert "--scheduler-steps" in one_line_error(capsys, base + ["--request-rate", "4", "--scheduler-steps", "0"])


def test_scorecard_reads_the_scheduler_steps_from_the_engine_version():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from point_pricing import scheduler_steps

    assert scheduler_steps("v0.6.0 (--num-scheduler-steps 10)") == 10
    assert scheduler_steps("v0.6.0") == 1 and scheduler_steps(None) == 1


def test_engine_default_token_budgets():
    # The --chunk-size default is the engine's own: TensorRT-LLM's max_num_tokens 8192 on every GPU
    # (the LLM API default, aiconfigurator-core TRTLLM_DEFAULT_MAX_NUM_TOKENS); SGLang's
    # chunked_prefill_size by GPU memory (server_args.py: 8192 below 160 GiB, 16384 from it);
    # vLLM's as test_vllm_default_token_budget. A100 80 GB: 74.5 GiB; B200: 180 GB = 167.6 GiB.
    a100, b200, h100 = get_profile("a100-80gb"), get_profile("b200"), get_profile("h100-sxm")
    assert [default_chunk_tokens(g, "trtllm") for g in (a100, h100, b200)] == [8192, 8192, 8192]
    assert [default_chunk_tokens(g, "sglang") for g in (a100, h100, b200)] == [8192, 8192, 16384]
    assert [default_chunk_tokens(g, "vllm") for g in (a100, h100, b200)] == [2048, 8192, 16384]


def test_sglang_runs_prefill_first():
    from inferecon.model.serving import engine_scheduler

    assert engine_scheduler("sglang") == "prefill-first"


def test_prefill_first_closed_loop_simulated_by_hand(llama8b, h100):
    from inferecon.model.prefill import prefill_step
    from inferecon.model.serving import simulate_closed_loop
    from inferecon.model.terms import Layouts, evaluate

    # Two clients, 512 in / 65 out, a budget of 512 tokens (one prompt a step). Prefill first:
    # step 1 prefills A alone (P), step 2 prefills B alone (P) while A waits undecoded, then both
    # decode 64 steps together at batch 2 (t2 each) and finish in the same step, so every round
    # repeats it. TTFT: P and 2P, mean 1.5 P. TPOT: B's 64 tokens take 64 t2; A's first token came
    # at P and its last at 2P + 64 t2, so A's is (P + 64 t2) / 64: mean t2 + P / 128.
    run = simulate_closed_loop(llama8b, h100, input_len=512, output_len=65, concurrency=2, chunk_tokens=512,
                               scheduler="prefill-first")
    p = prefill_step(llama8b, h100, chunks=[(512, 0, True)], decode_tokens=0).t_prefill_s
    t2 = float(evaluate(llama8b, h100, Layouts(tp_r=1, tp_c=1, pp=1, ep=1, micro_batch=2), 512 + 65 // 2).t_step_s[0])
    assert run.ttft_mean_s == pytest.approx(1.5 * p, rel=1e-9)
    assert run.tpot_mean_s == pytest.approx(t2 + p / 128, rel=1e-9)


def test_prefill_first_lone_client_by_hand(llama8b, h100):
    from inferecon.model.prefill import prefill_step

    # One client: its prompt runs in a prefill-only step of its own (no decode beside it), and no
    # other prompt ever stalls its decode steps, so TTFT = that step and TPOT = the batch-1 step.
    r = serve(llama8b, h100, input_len=2048, output_len=128, concurrency=1, scheduler="prefill-first")
    p = prefill_step(llama8b, h100, chunks=[(2048, 0, True)], decode_tokens=0).t_prefill_s
    assert r.ttft_s == pytest.approx(p, rel=1e-9)
    assert r.tpot_s == pytest.approx(r.t_decode_step_s, rel=1e-9)
    assert r.scheduler == "prefill-first" and "prefill-first" in r.queue_model
    assert serve(llama8b, h100, input_len=2048, output_len=128, concurrency=1).scheduler == "mixed"
    with pytest.raises(UserError, match="step scheduler"):
        serve(llama8b, h100, input_len=2048, output_len=128, concurrency=1, scheduler="fifo")


def test_overlap_scheduler_waits_one_step_by_hand(llama8b, h100):
    from inferecon.model.prefill import prefill_step
    from inferecon.model.serving import engine_overlaps, simulate_closed_loop

    assert engine_overlaps("sglang") and not engine_overlaps("vllm") and not engine_overlaps("trtllm")
    # One client under SGLang's defaults (prefill first, one step ahead): when its request ends, the
    # scheduler has already launched one more batch-1 decode step (it sees the end a step late);
    # the next prompt's prefill-only step P follows it. TTFT = t1 + P; TPOT stays the batch-1 step.
    p = prefill_step(llama8b, h100, chunks=[(2048, 0, True)], decode_tokens=0).t_prefill_s
    r = serve(llama8b, h100, input_len=2048, output_len=128, concurrency=1, scheduler="prefill-first",
              overlap_schedule=True)
    assert r.ttft_s == pytest.approx(r.t_decode_step_s + p, rel=1e-9)
    assert r.tpot_s == pytest.approx(r.t_decode_step_s, rel=1e-9) and r.overlap_schedule
    # The simulation, step by step, the same: the first request (an idle engine takes it at once)
    # is warm-up; every later one waits the extra step.
    run = simulate_closed_loop(llama8b, h100, input_len=2048, output_len=128, concurrency=1,
                               scheduler="prefill-first", overlap=True)
    assert run.ttft_mean_s == pytest.approx(r.t_decode_step_s + p, rel=1e-6)
    assert run.tpot_mean_s == pytest.approx(r.t_decode_step_s, rel=1e-6)


def test_scorecard_reads_sglang_before_v04_as_without_overlap():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from point_pricing import overlap_schedule

    # SGLang v0.4 (2024-12-04) introduced the overlap scheduler, on by default.
    assert overlap_schedule("sglang", "v0.3.0 (--disable-radix-cache)") is False
    assert overlap_schedule("sglang", "v0.5.7") is None
    assert overlap_schedule("sglang", "not stated (lmsysorg/sglang:latest image, Dec 2024)") is None
    assert overlap_schedule("vllm", "v0.3.0") is None
