"""What the run was measured on: device metadata for the manifest, the identity every record
carries, and clock/throttle watching around each case.

NVML (nvidia-ml-py, imported as `pynvml`) and CUDA are optional: their absence is recorded
in the metadata ("nvml": {"available": false, "error": ...}), never raised. Nothing here
changes clocks, power limits or modes — the card is measured as found.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Optional

from inferecon import __version__

# Environment variables that change what a benchmark measures (library choices, algorithms,
# threads, visible devices). Anything whose name looks like a secret is never recorded.
_ENV_PREFIXES = ("CUDA_", "NCCL_", "TORCH_", "PYTORCH_", "OMP_", "MKL_", "CUBLAS", "CUDNN_",
                 "NVIDIA_", "TRITON_", "KMP_", "OPENBLAS_", "GOMP_", "LD_PRELOAD", "MASTER_",
                 "WORLD_SIZE", "LOCAL_RANK", "RANK")
_SECRET = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL", re.I)

# NVML clock-event reasons that mean the clocks were pulled down by power or heat (the
# others — idle, application clocks, sync boost, display — are not throttling of a running
# kernel). Values are NVML's bit flags, stable across driver versions.
_THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
_OTHER_BITS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x10: "sync_boost",
               0x100: "display_clock_setting"}


def throttle_names(mask: int) -> list[str]:
    names = {**_OTHER_BITS, **_THROTTLE_BITS}
    return [n for bit, n in sorted(names.items()) if mask & bit]


def is_throttling(mask: int) -> bool:
    return any(mask & bit for bit in _THROTTLE_BITS)


def env_vars() -> dict:
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith(_ENV_PREFIXES) and not _SECRET.search(k)}


# --------------------------------------------------------------------------------------------
# NVML


class _Nvml:
    """A lazily initialised NVML session; `ok` is False (with `error`) where there is none."""

    def __init__(self):
        self.ok = False
        self.error = None
        self.mod = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self.mod = pynvml
            self.ok = True
        except Exception as exc:  # library missing, no driver, no GPU: all just "no NVML"
            self.error = f"{type(exc).__name__}: {exc}"

    def call(self, name, *args, default=None):
        """pynvml.<name>(*args), or `default` if this driver/GPU does not support it."""
        if not self.ok:
            return default
        fn = getattr(self.mod, name, None)
        if fn is None:
            return default
        try:
            value = fn(*args)
        except Exception:
            return default
        return value.decode() if isinstance(value, bytes) else value


_NVML: Optional[_Nvml] = None


def nvml() -> _Nvml:
    global _NVML
    if _NVML is None:
        _NVML = _Nvml()
    return _NVML


def _clock_reasons(n: _Nvml, handle) -> Optional[int]:
    # Renamed "ClocksEventReasons" in recent drivers; the old name still exists in older ones.
    v = n.call("nvmlDeviceGetCurrentClocksEventReasons", handle)
    if v is None:
        v = n.call("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return v


def _gpu_nvml_info(n: _Nvml, index: int) -> dict:
    m = n.mod
    h = n.call("nvmlDeviceGetHandleByIndex", index)
    if h is None:
        return {"index": index}
    mem = n.call("nvmlDeviceGetMemoryInfo", h)
    pci = n.call("nvmlDeviceGetPciInfo", h)
    power_mw = n.call("nvmlDeviceGetEnforcedPowerLimit", h) or n.call("nvmlDeviceGetPowerManagementLimit", h)
    cc = n.call("nvmlDeviceGetCudaComputeCapability", h)
    info = {
        "index": index,
        "name": n.call("nvmlDeviceGetName", h),
        "uuid": n.call("nvmlDeviceGetUUID", h),
        "pci_bus_id": (pci.busId.decode() if isinstance(pci.busId, bytes) else pci.busId) if pci is not None else None,
        "memory_total_bytes": int(mem.total) if mem is not None else None,
        "compute_capability": list(cc) if cc else None,
        "sm_clock_mhz": n.call("nvmlDeviceGetClockInfo", h, m.NVML_CLOCK_SM),
        "mem_clock_mhz": n.call("nvmlDeviceGetClockInfo", h, m.NVML_CLOCK_MEM),
        "sm_clock_max_mhz": n.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_SM),
        "mem_clock_max_mhz": n.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_MEM),
        "applications_sm_clock_mhz": n.call("nvmlDeviceGetApplicationsClock", h, m.NVML_CLOCK_SM),
        "power_limit_w": power_mw / 1000 if power_mw else None,
        "power_draw_w": (lambda p: p / 1000 if p else None)(n.call("nvmlDeviceGetPowerUsage", h)),
        "temperature_c": n.call("nvmlDeviceGetTemperature", h, m.NVML_TEMPERATURE_GPU),
        "persistence_mode": n.call("nvmlDeviceGetPersistenceMode", h),
        "ecc_mode": (lambda e: e[0] if e else None)(n.call("nvmlDeviceGetEccMode", h)),
        "mig_mode": (lambda e: e[0] if e else None)(n.call("nvmlDeviceGetMigMode", h)),
    }
    reasons = _clock_reasons(n, h)
    info["clock_event_reasons"] = throttle_names(reasons) if reasons is not None else None
    # NVLink: count active links and their version (NVML exposes up to 18 on H100).
    links = []
    for link in range(getattr(m, "NVML_NVLINK_MAX_LINKS", 18)):
        state = n.call("nvmlDeviceGetNvLinkState", h, link)
        if state is None:
            break
        if state:
            links.append({"link": link, "version": n.call("nvmlDeviceGetNvLinkVersion", h, link)})
    info["nvlink_active_links"] = len(links)
    if links:
        info["nvlink_version"] = links[0]["version"]
    return info


def _topology(n: _Nvml, count: int) -> Optional[list[list[str]]]:
    """GPU-to-GPU common-ancestor matrix (like `nvidia-smi topo -m`, without NVLink counts)."""
    if count < 2:
        return None
    levels = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
    handles = [n.call("nvmlDeviceGetHandleByIndex", i) for i in range(count)]
    if any(h is None for h in handles):
        return None
    matrix = []
    for i in range(count):
        row = []
        for j in range(count):
            if i == j:
                row.append("X")
                continue
            lvl = n.call("nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j])
            row.append(levels.get(lvl, str(lvl)) if lvl is not None else "?")
        matrix.append(row)
    return matrix


# --------------------------------------------------------------------------------------------
# CPU


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip() or platform.processor()
        except Exception:
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_bytes() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def host_class() -> str:
    """The kind of host a run stands on, for its identity: CPU model, logical cores and memory.
    Two hosts of one class are interchangeable for a run; a resume on another is refused
    (harness.store.check_same_run)."""
    mem = memory_bytes()
    return f"{cpu_model()}, {os.cpu_count()} cores, {round(mem / 2**30) if mem else '?'} GiB"


def _cpu_info() -> dict:
    info = {"model": cpu_model(), "logical_cores": os.cpu_count(), "memory_bytes": memory_bytes(),
            "machine": platform.machine()}
    try:
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:
        pass
    return info


# --------------------------------------------------------------------------------------------


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_device(requested) -> str:
    """The device a command runs on: the one asked for, else cuda where available, else cpu."""
    from inferecon.core.errors import UserError

    has_cuda = cuda_available()
    if requested == "cuda" and not has_cuda:
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    return requested or ("cuda" if has_cuda else "cpu")


def device_identity(device: str) -> tuple[str, int]:
    """(device_name, gpu_count) for every record: GPU model on cuda, CPU model on cpu."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(torch.cuda.current_device()), torch.cuda.device_count()
    return cpu_model(), 0


def collect_metadata(device: str) -> dict:
    """Everything the manifest records about the machine and its software."""
    meta: dict = {
        "device": device,
        "inferecon_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_info(),
        "env": env_vars(),
    }
    try:
        import torch

        meta["torch_version"] = torch.__version__
        meta["torch_cuda_version"] = torch.version.cuda
        meta["cudnn_version"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        meta["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            try:
                nccl = torch.cuda.nccl.version()
                meta["nccl_version"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
            except Exception as exc:
                meta["nccl_version"] = None
                meta["nccl_error"] = str(exc)
            meta["torch_devices"] = []
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                meta["torch_devices"].append({
                    "index": i, "name": p.name, "total_memory_bytes": int(p.total_memory),
                    "multi_processor_count": p.multi_processor_count,
                    "compute_capability": [p.major, p.minor],
                    "l2_cache_bytes": int(getattr(p, "L2_cache_size", 0) or 0) or None,
                })
    except ImportError:
        meta["torch_version"] = None

    n = nvml()
    nv = {"available": n.ok}
    if n.ok:
        count = n.call("nvmlDeviceGetCount", default=0) or 0
        cuda_drv = n.call("nvmlSystemGetCudaDriverVersion")
        nv.update({
            "driver_version": n.call("nvmlSystemGetDriverVersion"),
            "cuda_driver_version": f"{cuda_drv // 1000}.{cuda_drv % 1000 // 10}" if cuda_drv else None,
            "gpu_count": count,
            "gpus": [_gpu_nvml_info(n, i) for i in range(count)],
            "topology": _topology(n, count),
        })
    else:
        nv["error"] = n.error
    meta["nvml"] = nv
    # The cache flush before each flushed repetition (its size, the cache it was sized from,
    # whether the cap made it partial): it changes what a cold-cache case measures.
    try:
        from inferecon.harness.timing import flush_plan

        meta["cache_flush"] = flush_plan(device).manifest_fields()
    except Exception as exc:  # no CUDA context, no torch: recorded, never raised
        meta["cache_flush"] = {"error": f"{type(exc).__name__}: {exc}"}
    name, count = device_identity(device) if device == "cpu" or cuda_available() else (cpu_model(), 0)
    meta["device_name"] = name
    meta["gpu_count"] = count
    return meta


# --------------------------------------------------------------------------------------------
# Watching clocks while a case runs


@dataclass
class ClockWatch:
    """Clocks and throttle reasons of one GPU sampled before, during (a 20 Hz thread) and
    after a case; `throttled` when power or heat pulled the clocks down at any sample."""

    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    reasons_mask: int = 0
    sm_clock_min_mhz: Optional[int] = None
    samples: int = 0

    @property
    def throttled(self) -> bool:
        return is_throttling(self.reasons_mask)

    def record_fields(self) -> dict:
        if not self.before and not self.after:
            return {"throttled": False}
        return {
            "throttled": self.throttled,
            "throttle_reasons": ",".join(n for n in throttle_names(self.reasons_mask) if n != "gpu_idle"),
            "sm_clock_mhz_before": self.before.get("sm_clock_mhz"),
            "sm_clock_mhz_after": self.after.get("sm_clock_mhz"),
            "sm_clock_mhz_min": self.sm_clock_min_mhz,
            "mem_clock_mhz_after": self.after.get("mem_clock_mhz"),
            "temperature_c_before": self.before.get("temperature_c"),
            "temperature_c_after": self.after.get("temperature_c"),
        }


class ClockWatcher:
    """Context manager: `with ClockWatcher(device) as w: ...; w.result.record_fields()`.
    A no-op (throttled=False) on CPU or without NVML."""

    def __init__(self, device: str, gpu_index: Optional[int] = None, period_s: float = 0.05):
        self.result = ClockWatch()
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = None
        self._handle = None
        self._n = None
        if device == "cuda":
            n = nvml()
            if n.ok:
                if gpu_index is None:
                    gpu_index = _nvml_index_of_current_device()
                self._handle = n.call("nvmlDeviceGetHandleByIndex", gpu_index)
                self._n = n if self._handle is not None else None

    def _snap(self) -> dict:
        n, h, m = self._n, self._handle, self._n.mod
        reasons = _clock_reasons(n, h) or 0
        snap = {"sm_clock_mhz": n.call("nvmlDeviceGetClockInfo", h, m.NVML_CLOCK_SM),
                "mem_clock_mhz": n.call("nvmlDeviceGetClockInfo", h, m.NVML_CLOCK_MEM),
                "temperature_c": n.call("nvmlDeviceGetTemperature", h, m.NVML_TEMPERATURE_GPU),
                "reasons": reasons}
        self.result.reasons_mask |= reasons
        self.result.samples += 1
        sm = snap["sm_clock_mhz"]
        if sm is not None and not reasons & 0x1:  # idle clocks are not a slowdown
            cur = self.result.sm_clock_min_mhz
            self.result.sm_clock_min_mhz = sm if cur is None else min(cur, sm)
        return snap

    def _poll(self):
        while not self._stop.wait(self.period_s):
            self._snap()

    def __enter__(self):
        if self._n is not None:
            self.result.before = self._snap()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._n is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self.result.after = self._snap()
        return False


def _nvml_index_of_current_device() -> int:
    """NVML numbers GPUs by PCI order, CUDA by CUDA_VISIBLE_DEVICES/fastest-first: match UUIDs."""
    try:
        import torch

        idx = torch.cuda.current_device()
        uuid = str(torch.cuda.get_device_properties(idx).uuid)
        n = nvml()
        for i in range(n.call("nvmlDeviceGetCount", default=0) or 0):
            h = n.call("nvmlDeviceGetHandleByIndex", i)
            nv_uuid = n.call("nvmlDeviceGetUUID", h) or ""
            if uuid and uuid in nv_uuid:
                return i
        return idx
    except Exception:
        return 0


DEFAULT_CPU_THREADS = 1


def apply_cpu_threads(device: str, threads: Optional[int]) -> Optional[int]:
    """Pin the intra-op thread count of CPU measurements (this process and the torchrun ranks it
    starts, through OMP_NUM_THREADS). Why: with more OpenMP threads than idle cores, a tiny op
    waits at every parallel region for a descheduled thread — on a shared 2-core machine a
    4-layer decode step measured 103 ms with 2 threads and 11 ms with 1. Calibration and
    validation must also use the same count, or the profile describes another machine.
    Returns the count in force (None on GPU, where it does not apply)."""
    if device != "cpu":
        return None
    import torch

    n = DEFAULT_CPU_THREADS if threads is None else int(threads)
    if n < 1:
        from inferecon.core.errors import UserError

        raise UserError(f"--threads must be at least 1, got {n}")
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    return n
