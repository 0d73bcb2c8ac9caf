"""Statistics and repetition logic of harness.timing, with a seeded fake timer (no GPU)."""

import numpy as np
import pytest

from inferecon.harness.timing import Measurement, TimingConfig, measure


class FakeTimer:
    """A clock whose every call-pair (start, end) spans a duration drawn from `draw`.
    `fn` does nothing; the timer alone decides what each repetition "took"."""

    def __init__(self, draw):
        self.draw = draw
        self.t_ns = 0
        self.calls = 0
        self.durations_s = []

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % 2 == 0:  # an end stamp: advance by one repetition's duration
            d = self.draw()
            self.durations_s.append(d)
            self.t_ns += int(round(d * 1e9))
        return self.t_ns


def test_median_iqr_match_numpy_on_raw_samples():
    rng = np.random.default_rng(0)
    timer = FakeTimer(lambda: float(rng.normal(1e-3, 2e-5)))
    cfg = TimingConfig(warmup_ms=0, budget_ms=50, min_reps=5, max_reps=500)
    m = measure(lambda: None, device="cpu", config=cfg, timer=timer)
    # the last m.reps durations drawn are the timed repetitions (after the estimate calls)
    timed = np.array(timer.durations_s[-m.reps:])
    np.testing.assert_allclose(m.samples_s, timed, atol=1e-9)
    assert m.median_s == pytest.approx(np.median(timed), abs=1e-9)
    q1, q3 = np.percentile(timed, [25, 75])
    assert m.iqr_s == pytest.approx(q3 - q1, abs=2e-9)
    assert not m.noisy  # 2% spread
    assert m.timer_name == "injected"


def test_repetitions_follow_time_budget_and_clamps():
    timer = FakeTimer(lambda: 2e-3)  # 2 ms per call
    m = measure(lambda: None, device="cpu", config=TimingConfig(warmup_ms=0, budget_ms=40), timer=timer)
    assert m.reps == 20  # 40 ms budget / 2 ms
    m = measure(lambda: None, device="cpu", config=TimingConfig(warmup_ms=0, budget_ms=1, min_reps=7), timer=FakeTimer(lambda: 2e-3))
    assert m.reps == 7
    m = measure(lambda: None, device="cpu", config=TimingConfig(warmup_ms=0, budget_ms=1000, max_reps=30), timer=FakeTimer(lambda: 1e-3))
    assert m.reps == 30


def test_warmup_calls_fn_without_timing_it():
    calls = []
    timer = FakeTimer(lambda: 1e-3)
    cfg = TimingConfig(warmup_ms=10, budget_ms=5, min_reps=5)
    m = measure(lambda: calls.append(1), device="cpu", config=cfg, timer=timer)
    # 1 first call + 3 estimate calls + 10 warm-up (10 ms / 1 ms) + 5 timed
    assert m.extra["warmup_reps"] == 10
    assert len(calls) == 1 + 3 + 10 + 5


def test_bimodal_samples_are_flagged_noisy():
    rng = np.random.default_rng(1)
    timer = FakeTimer(lambda: 1e-3 if rng.random() < 0.5 else 1.5e-3)
    m = measure(lambda: None, device="cpu", config=TimingConfig(warmup_ms=0, budget_ms=100), timer=timer)
    assert m.noisy
    assert m.iqr_s / m.median_s > 0.10


def test_noisy_threshold_is_configurable():
    samples = [1.0, 1.0, 1.05, 1.1, 1.1]  # IQR/median = 0.1/1.05 ~= 0.095
    assert not Measurement.from_samples(samples, noisy_iqr_ratio=0.10).noisy
    assert Measurement.from_samples(samples, noisy_iqr_ratio=0.05).noisy


def test_inner_reps_divide_the_sample():
    calls = []
    timer = FakeTimer(lambda: 1e-3)  # one repetition = 10 inner calls = 1 ms
    cfg = TimingConfig(warmup_ms=0, budget_ms=10, inner_reps=10)
    m = measure(lambda: calls.append(1), device="cpu", config=cfg, timer=timer)
    assert m.median_s == pytest.approx(1e-4)
    assert len(calls) == 10 * (1 + 3 + m.reps)


def test_record_fields_in_microseconds():
    m = Measurement.from_samples([1e-6, 2e-6, 3e-6])
    rec = m.record_fields()
    assert rec["samples_us"] == pytest.approx([1, 2, 3])
    assert rec["median_us"] == pytest.approx(2.0)
    assert rec["reps"] == 3


def test_real_cpu_clock_times_real_work():
    import time

    cfg = TimingConfig(warmup_ms=0, budget_ms=20, min_reps=3)
    m = measure(lambda: time.sleep(0.002), device="cpu", config=cfg)
    assert m.median_s >= 0.002
    assert m.timer_name == "perf_counter_ns"


def test_bad_config_and_device_rejected():
    with pytest.raises(ValueError):
        TimingConfig(min_reps=10, max_reps=5)
    with pytest.raises(ValueError):
        measure(lambda: None, device="tpu", config=TimingConfig())


def test_cuda_event_path_with_a_fake_torch(monkeypatch):
    """The GPU path (events around each repetition, one synchronize at the end, ms -> s)
    driven by a stand-in for torch.cuda whose clock advances only when fn runs."""
    import types

    from inferecon.harness import timing

    clock = {"ms": 0.0, "syncs": 0}

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = clock["ms"]

        def elapsed_time(self, end):
            return end.t - self.t

    def sync():
        clock["syncs"] += 1

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(Event=Event, synchronize=sync))
    monkeypatch.setattr(timing, "_torch", lambda: fake)
    rng = np.random.default_rng(3)
    durations_ms = []

    def fn():
        d = float(rng.uniform(0.9, 1.1))  # one "kernel" of about 1 ms
        durations_ms.append(d)
        clock["ms"] += d

    m = measure(fn, device="cuda", config=TimingConfig(warmup_ms=0, budget_ms=20, min_reps=5))
    assert m.timer_name == "cuda_event"
    np.testing.assert_allclose(m.samples_s, np.array(durations_ms[-m.reps:]) * 1e-3)
    assert 15 <= m.reps <= 25
    # 2 syncs around the first call, 2 in the estimate (after its first repetition, which decides
    # whether two more are needed, and after those), 1 after the timed repetitions: never one
    # per repetition.
    assert clock["syncs"] == 5


class WorkClock:
    """A clock that advances only when work runs: `fn` takes a seeded 1.00-1.02 ms, `flush` 9 ms.
    What the timing function then costs in (fake) wall time is counted exactly."""

    def __init__(self, seed: int = 0, fn_s: float = 1e-3, flush_s: float = 9e-3):
        self.rng = np.random.default_rng(seed)
        self.t_ns = 0
        self.fn_s = fn_s
        self.flush_s = flush_s
        self.fn_calls = 0
        self.flush_calls = 0

    def __call__(self) -> int:
        return self.t_ns

    def fn(self):
        self.fn_calls += 1
        self.t_ns += int(round(self.fn_s * float(self.rng.uniform(1.0, 1.02)) * 1e9))

    def flush(self):
        self.flush_calls += 1
        self.t_ns += int(round(self.flush_s * 1e9))


def test_flush_is_paid_from_the_repetition_budget_and_left_out_of_the_samples():
    clock = WorkClock()
    cfg = TimingConfig(warmup_ms=20, budget_ms=100, min_reps=5, max_reps=1000, flush_l2=True)
    m = measure(clock.fn, device="cpu", config=cfg, timer=clock, flush_fn=clock.flush, flush_bytes=64 << 20)
    # One repetition costs 1.00-1.02 ms of call + 9 ms of flush = 10.00-10.02 ms of wall: the
    # 100 ms budget buys ceil(100 / 10.0x) = 10 repetitions (not 100 / 1 = 100, which would
    # spend 1 s of flushing), the 20 ms warm-up ceil(20 / 10.0x) = 2.
    assert m.reps == 10
    assert m.extra["warmup_reps"] == 2
    assert 10.0e-3 <= m.extra["rep_estimate_s"] <= 10.02e-3  # the estimate includes the flush
    # The flush is outside every timed window: each sample is one 1.00-1.02 ms call.
    assert all(1.0e-3 <= s <= 1.02e-3 for s in m.samples_s)
    # Whole fake wall time, by hand: first call 1 ms (an injected flush needs no paging in),
    # 3 estimate repetitions with their flushes 30 ms, warm-up 2 x 10 ms, timed 10 x 10 ms.
    assert clock.t_ns * 1e-9 == pytest.approx(0.001 + 0.030 + 0.020 + 0.100, rel=0.02)
    assert clock.flush_calls == 3 + 2 + 10
    assert m.flush_bytes == 64 << 20 and m.record_fields()["flush_bytes"] == 64 << 20


def test_no_flush_records_zero_flush_bytes():
    clock = WorkClock()
    m = measure(clock.fn, device="cpu", config=TimingConfig(warmup_ms=0, budget_ms=10), timer=clock)
    assert m.reps == 10 and m.flush_bytes == 0 and clock.flush_calls == 0


def test_flush_sizes_by_hand():
    from inferecon.harness.timing import flush_size

    MiB = 1 << 20
    # This 2-core EPYC VM's sysfs L3: 32 MiB -> 2 x 32 = 64 MiB.
    assert flush_size(32 * MiB, "cpu") == (64 * MiB, False)
    # The 480 MiB L3 of issue 19: 2 x 480 = 960 MiB asked, the 256 MiB cap written.
    assert flush_size(480 * MiB, "cpu") == (256 * MiB, True)
    # A 4 MiB laptop L3: the 32 MiB floor.
    assert flush_size(4 * MiB, "cpu") == (32 * MiB, False)
    # H100 SXM: torch reports L2_cache_size = 52428800 B (50 MiB) -> 100 MiB, as before the cap.
    assert flush_size(52428800, "cuda") == (100 * MiB, False)
    # A 20 MiB GPU L2 (A10-class): the 64 MiB floor.
    assert flush_size(20 * MiB, "cuda") == (64 * MiB, False)
    # Nothing reported: triton's fixed 256 MB buffer.
    assert flush_size(None, "cpu") == (256 * MiB, False)


def test_a_large_reported_llc_gets_the_capped_flush_and_the_manifest_says_so(monkeypatch):
    from inferecon.harness import device, timing

    monkeypatch.setattr(timing, "cpu_last_level_cache_bytes", lambda: 480 << 20)
    plan = timing.flush_plan("cpu")
    assert (plan.flush_bytes, plan.capped, plan.covers_cache) == (256 << 20, True, False)
    meta = device.collect_metadata("cpu")["cache_flush"]
    assert meta["flush_bytes"] == 256 << 20 and meta["cache_bytes"] == 480 << 20
    assert meta["capped"] is True and meta["covers_cache"] is False


def test_one_flush_buffer_is_kept_across_measurements():
    from inferecon.harness import timing

    timing.release_flush_buffers()
    cfg = TimingConfig(warmup_ms=0, budget_ms=1, min_reps=3, max_reps=3, flush_l2=True)
    a = measure(lambda: None, device="cpu", config=cfg, timer=FakeTimer(lambda: 1e-3), flush_bytes=1 << 20)
    buf = timing._FLUSH_BUFFERS[("cpu", 1 << 20)]
    b = measure(lambda: None, device="cpu", config=cfg, timer=FakeTimer(lambda: 1e-3), flush_bytes=1 << 20)
    assert timing._FLUSH_BUFFERS[("cpu", 1 << 20)] is buf  # not reallocated (and re-faulted) per case
    assert buf.numel() * buf.element_size() == 1 << 20
    assert a.flush_bytes == b.flush_bytes == 1 << 20
    timing.release_flush_buffers()
    assert not timing._FLUSH_BUFFERS


def test_cuda_event_windows_leave_the_flush_out_and_the_budget_pays_for_it(monkeypatch):
    """On the GPU path the flush kernel is enqueued before each start event: a fake stream
    whose clock advances 9 ms per flush and 1 ms per call gives 1 ms samples and
    100 ms / (1 + 9) ms = 10 repetitions."""
    import types

    from inferecon.harness import timing

    clock = {"ms": 0.0}

    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self):
            self.t = clock["ms"]

        def elapsed_time(self, end):
            return end.t - self.t

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(Event=Event, synchronize=lambda: None))
    monkeypatch.setattr(timing, "_torch", lambda: fake)

    def fn():
        clock["ms"] += 1.0

    def flush():
        clock["ms"] += 9.0

    cfg = TimingConfig(warmup_ms=0, budget_ms=100, min_reps=5, flush_l2=True)
    m = measure(fn, device="cuda", config=cfg, flush_fn=flush, flush_bytes=100 << 20)
    assert m.reps == 10
    assert m.samples_s == pytest.approx([1e-3] * 10)
    assert m.extra["rep_estimate_s"] == pytest.approx(10e-3)
    assert m.flush_bytes == 100 << 20


def test_a_repetition_longer_than_the_budget_is_estimated_once():
    # 50 ms per repetition (flush 45 ms + call 5 ms) against a 25 ms budget and min_reps 5: the
    # first timed repetition already says 5 x 50 ms > 25 ms, so the count is min_reps without
    # two more estimates. Calls by hand: 1 first + 1 estimate + ceil(2 ms / 50 ms) = 1 warm-up
    # + 5 timed = 8 (not 10); flushes 1 + 1 + 5 = 7.
    clock = WorkClock(fn_s=5e-3, flush_s=45e-3)
    cfg = TimingConfig(warmup_ms=2, budget_ms=25, min_reps=5, max_reps=500, flush_l2=True)
    m = measure(clock.fn, device="cpu", config=cfg, timer=clock, flush_fn=clock.flush)
    assert m.reps == 5 and clock.fn_calls == 8 and clock.flush_calls == 7


def test_a_fixed_count_always_makes_the_same_calls():
    # min_reps == max_reps (what TP decode ranks use so that their collectives pair up): every
    # rank makes 1 first + 3 estimate + 0 warm-up + 4 timed = 8 calls, however long a call takes.
    for call_s in (1e-4, 1.0):
        clock = WorkClock(fn_s=call_s)
        cfg = TimingConfig(warmup_ms=0, budget_ms=1, min_reps=4, max_reps=4)
        m = measure(clock.fn, device="cpu", config=cfg, timer=clock)
        assert m.reps == 4 and clock.fn_calls == 8
