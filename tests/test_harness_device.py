"""Device metadata without a GPU, throttle decoding with a fake NVML, published peaks, and the
decode-GEMM shapes derived from the model table."""

import sys
import types

import pytest

from inferecon.core.text import slug
from inferecon.report.summary import published_peak
from inferecon.harness import device
from inferecon.kernels import matmul


def test_metadata_records_missing_nvml_instead_of_failing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    monkeypatch.setattr(device, "_NVML", None)
    meta = device.collect_metadata("cpu")
    assert meta["nvml"]["available"] is False and meta["nvml"]["error"]
    assert meta["device_name"] == device.cpu_model() and meta["gpu_count"] == 0
    assert meta["cpu"]["logical_cores"] >= 1 and meta["cpu"]["memory_bytes"] > 0
    monkeypatch.setattr(device, "_NVML", None)  # do not leave the fake failure cached


def test_env_vars_keep_behaviour_changing_ones_and_drop_secrets(monkeypatch):
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("CUDA_API_TOKEN", "do-not-record")
    monkeypatch.setenv("UNRELATED_THING", "x")
    env = device.env_vars()
    assert env["NCCL_DEBUG"] == "INFO" and env["OMP_NUM_THREADS"] == "3"
    assert "CUDA_API_TOKEN" not in env and "UNRELATED_THING" not in env


def test_throttle_reason_bits():
    assert device.throttle_names(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert device.is_throttling(0x4) and device.is_throttling(0x40)
    assert not device.is_throttling(0x1 | 0x2 | 0x10)  # idle, app clocks, sync boost


def _fake_nvml(reasons_seq, sm_seq):
    """A pynvml stand-in whose clocks and clock-event reasons follow the given sequences."""
    state = {"i": 0}  # snapshot number; a snapshot ends with the temperature read

    def reasons(h):
        return reasons_seq[min(state["i"], len(reasons_seq) - 1)]

    def temperature(h, kind):
        state["i"] += 1
        return 55

    mod = types.SimpleNamespace(
        NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetHandleByIndex=lambda i: "h0",
        nvmlDeviceGetCurrentClocksEventReasons=reasons,
        nvmlDeviceGetClockInfo=lambda h, kind: sm_seq[min(state["i"], len(sm_seq) - 1)] if kind == 0 else 2619,
        nvmlDeviceGetTemperature=temperature,
    )
    n = device._Nvml.__new__(device._Nvml)
    n.ok, n.error, n.mod = True, None, mod
    return n


def test_clock_watcher_flags_power_capping_seen_during_a_case(monkeypatch):
    monkeypatch.setattr(device, "_NVML", _fake_nvml([0x0, 0x4, 0x0], [1980, 1700, 1980]))
    with device.ClockWatcher("cuda", gpu_index=0, period_s=0.001) as w:
        import time

        time.sleep(0.05)
    fields = w.result.record_fields()
    assert fields["throttled"] is True and "sw_power_cap" in fields["throttle_reasons"]
    assert fields["sm_clock_mhz_before"] == 1980 and fields["temperature_c_after"] == 55
    monkeypatch.setattr(device, "_NVML", None)


def test_clock_watcher_idle_is_not_throttling(monkeypatch):
    monkeypatch.setattr(device, "_NVML", _fake_nvml([0x1], [345]))
    with device.ClockWatcher("cuda", gpu_index=0, period_s=0.001) as w:
        pass
    assert w.result.record_fields()["throttled"] is False
    monkeypatch.setattr(device, "_NVML", None)


def test_clock_watcher_is_a_no_op_on_cpu():
    with device.ClockWatcher("cpu") as w:
        pass
    assert w.result.record_fields() == {"throttled": False}


def test_published_peaks_by_device_name():
    assert published_peak("NVIDIA H100 80GB HBM3", "bf16") == 989
    assert published_peak("NVIDIA H100 80GB HBM3", "fp8") == 1979
    assert published_peak("NVIDIA H200", "hbm") == 4800
    assert published_peak("NVIDIA A100-SXM4-80GB", "hbm") == 2039
    assert published_peak("NVIDIA H100 PCIe", "bf16") is None  # other peaks, not guessed
    assert published_peak("AMD EPYC 7763", "bf16") is None
    assert published_peak("NVIDIA A100-SXM4-80GB", "fp8") is None
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_decode_shapes_follow_the_model_table():
    # Llama-3-70B: 64 query heads + 2 x 8 KV heads of 128; d_ff 28672.
    p = dict((name, (n, k)) for name, n, k in matmul.MODELS["llama-3-70b"].projections())
    assert p == {"qkv": (80 * 128, 8192), "o": (8192, 8192), "gate_up": (2 * 28672, 8192), "down": (8192, 28672)}
    p = dict((name, (n, k)) for name, n, k in matmul.MODELS["llama-3.1-405b"].projections())
    assert p["qkv"] == ((128 + 16) * 128, 16384) and p["down"] == (16384, 53248)


@pytest.mark.parametrize("quick", [True, False])
def test_gpu_plan_is_well_formed(quick):
    params = matmul.planned_params("cuda", quick, fp8=True)
    ids = [matmul.case_id(p) for p in params]
    assert len(ids) == len(set(ids))
    assert {p["dtype"] for p in params} >= {"bf16", "fp16", "tf32", "fp32", "fp8"}
    decode_m = {p["m"] for p in params if p["shape_kind"] == "decode"}
    assert min(decode_m) == 1 and max(decode_m) == 512
    assert any(p["shape_kind"] == "square" and p["m"] == 8192 and p["dtype"] == "bf16" for p in params)


def test_kernels_do_not_import_the_model_package():
    import subprocess

    code = ("import sys, inferecon.kernels.matmul, inferecon.kernels.memory, inferecon.kernels.launch;"
            "print(any(m.startswith('inferecon.model') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
