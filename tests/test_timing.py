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
    # 2 syncs around the first call, 1 after the estimate, 1 after the timed repetitions:
    # never one per repetition.
    assert clock["syncs"] == 4
