"""Process-group set-up for benchmarks that run on several ranks (torchrun or srun).

Two launchers are recognised, from their environment variables only (no home-made launcher):

- torchrun (`torch.distributed.run`, also under `srun ... torchrun`): RANK, WORLD_SIZE,
  LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
- `srun python ...` without torchrun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, with
  MASTER_ADDR/MASTER_PORT exported by the batch script (Slurm does not choose a rendezvous).

Backend: NCCL on CUDA, gloo on CPU. Every collective of the group is bounded by the group's
timeout (gloo raises after it; NCCL's watchdog aborts the communicator), so a rank that dies
or hangs ends the run instead of blocking it forever.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping, Optional

from inferecon.core.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the world, as its launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun" or "slurm"
    master_addr: str = ""
    master_port: int = 0


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise UserError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def detect(environ: Optional[Mapping[str, str]] = None) -> Optional[DistEnv]:
    """The launcher's world, or None when this process was started on its own."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistEnv(
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE"),
            local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            launcher="torchrun",
            master_addr=env.get("MASTER_ADDR", ""),
            master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else 0,
        )
    # The batch script itself also sees SLURM_PROCID=0 and SLURM_NTASKS; only a task started
    # by srun (a job step) carries a step id. Without this check a plain `python ...` in the
    # batch script would wait for SLURM_NTASKS-1 ranks that never come.
    in_step = "SLURM_STEP_ID" in env or "SLURM_STEPID" in env
    if in_step and "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
            raise UserError(
                "under srun without torchrun, export MASTER_ADDR and MASTER_PORT "
                "(see examples/slurm_collectives.sbatch)"
            )
        return DistEnv(
            rank=_int(env, "SLURM_PROCID"),
            world_size=_int(env, "SLURM_NTASKS"),
            local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
            launcher="slurm",
            master_addr=env["MASTER_ADDR"],
            master_port=_int(env, "MASTER_PORT"),
        )
    return None


@dataclass(frozen=True)
class DistContext:
    """An initialised world: the launcher's view plus what the ranks told each other."""

    env: DistEnv
    backend: str  # "nccl" or "gloo"
    device: str  # "cuda" or "cpu"
    timeout_s: float
    nodes: int  # distinct host names among the ranks
    ranks_per_node: int  # the most ranks on any one host

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def scope(self) -> str:
        return "intra" if self.nodes == 1 else "inter"

    def torch_device(self):
        import torch

        return torch.device("cuda", torch.cuda.current_device()) if self.device == "cuda" else torch.device("cpu")


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def gpu_index(local_rank: int, visible: int) -> int:
    """The GPU a rank drives: its local rank, or the only GPU it sees (srun --gpus-per-task=1
    gives every task one GPU, numbered 0, whatever its local rank)."""
    if visible == 1:
        return 0
    if local_rank >= visible:
        raise UserError(
            f"local rank {local_rank} has no GPU: {visible} visible on {socket.gethostname()} "
            "(start at most one rank per GPU)"
        )
    return local_rank


def init(device: str, timeout_s: float, env: Optional[DistEnv] = None) -> DistContext:
    """Join the world described by the launcher's environment; call `destroy()` at the end."""
    import torch
    import torch.distributed as dist

    env = env or detect()
    if env is None:
        raise UserError("not started by torchrun or srun: no RANK/WORLD_SIZE or SLURM_PROCID in the environment")
    if device not in ("cuda", "cpu"):
        raise UserError(f"device must be cuda or cpu, not {device!r}")
    backend = backend_for(device)
    if backend == "nccl" and not dist.is_nccl_available():
        raise UserError("--device cuda needs a torch built with NCCL")
    if backend == "gloo" and not dist.is_gloo_available():
        raise UserError("--device cpu needs a torch built with gloo")

    kwargs = {}
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda but no CUDA device is visible")
        index = gpu_index(env.local_rank, torch.cuda.device_count())
        torch.cuda.set_device(index)
        # Binding the group to the device creates the NCCL communicator now (not lazily inside
        # the first timed call) and lets barrier() know which GPU to use.
        kwargs["device_id"] = torch.device("cuda", index)

    if env.launcher == "slurm":
        # env:// reads MASTER_ADDR/MASTER_PORT; rank and size come from Slurm's variables.
        kwargs.update(init_method="env://", rank=env.rank, world_size=env.world_size)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)

    # Count nodes from host names rather than trusting LOCAL_WORLD_SIZE/SLURM_NNODES: the
    # scope label (intra/inter) must describe where the ranks really are.
    hosts: list = [None] * env.world_size
    dist.all_gather_object(hosts, socket.gethostname())
    per_host = Counter(hosts)
    return DistContext(
        env=env,
        backend=backend,
        device=device,
        timeout_s=float(timeout_s),
        nodes=len(per_host),
        ranks_per_node=max(per_host.values()),
    )


def barrier(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.device == "cuda":
        import torch

        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def destroy() -> None:
    """Leave the world; safe to call when it was never joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
