"""Running the decode benchmark (kernels/decode.py) on a tensor-parallel torchrun world of this
node: the parent starts `tp` ranks (harness.torchrun: Ctrl-C/SIGTERM forwarded once, ranks die
with their launcher, their output in decode_tp.log) and waits; every rank builds its share of
the decoder and times the same steps; rank 0 hands its records back in one JSON file in the
work directory, rewritten atomically after every case, so the cases finished before an
interruption or a failure are there too (`saved_rows`). The caller (validation.decode) stores
them in its run session with what it knows and the ranks do not (the model, the clocks it
watched).

`python -m inferecon.sweeps.decode` is what torchrun starts on every rank.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

from inferecon.core.errors import UserError, exit_status
from inferecon.core.outpath import atomic_write
from inferecon.kernels.decode import Decoder, DecodeCase, DecoderShape, TPGroup, measure_case

RANKS_MODULE = "inferecon.sweeps.decode"
TP_ROWS = "decode_tp.json"  # rank 0's records, in the work directory
PROGRESS_PREFIX = "[decode]"


def _shape_from_json(text: str) -> DecoderShape:
    try:
        return DecoderShape(**json.loads(text))
    except (TypeError, ValueError) as exc:
        raise UserError(f"--shape: not a decoder shape ({exc})") from None


def run_in_world(shape: DecoderShape, cases: list[DecodeCase], device: str, out: Optional[str], quick: bool,
                 fixed_reps: int, dump: Optional[str] = None, timeout_s: float = 300.0) -> int:
    from inferecon.harness import distributed as hdist
    from inferecon.harness import torchrun

    if torchrun.attached():
        torchrun.bind_to_parent()  # a rank whose launcher died has no one to report to
    ctx = hdist.init(device, timeout_s)
    try:
        group = TPGroup(ctx.rank, ctx.world_size)
        shape.check_tp(group.size)
        if dump:
            # Numerics check: one step, the final hidden state and tokens of rank 0.
            case = cases[0]
            dec = Decoder(shape.with_layers(case.layers), case.batch, case.context, device, group)
            dec.step()
            if ctx.rank == 0:
                import torch

                torch.save({"hidden": dec.hidden.float().cpu(), "tokens": dec.next_tokens.cpu()}, dump)
            return 0
        rows = []
        for case in cases:
            rec = measure_case(shape, case, device, group, quick=quick, fixed_reps=fixed_reps)
            if ctx.rank == 0:
                rows.append(rec)
                sys.stderr.write(f"{PROGRESS_PREFIX} {rec['case_id']}: {rec['median_us']:.1f} us\n")
                sys.stderr.flush()
                if out:
                    # Rewritten (atomically) after every case: an interrupted world keeps what finished.
                    data = json.dumps(rows).encode()
                    atomic_write(Path(out), lambda f: f.write(data))
        hdist.barrier(ctx)
        return 0
    finally:
        hdist.destroy()


def rank_argv(shape: DecoderShape, cases: list[DecodeCase], device: str, out: str, quick: bool, fixed_reps: int,
              dump: Optional[str] = None) -> list[str]:
    """This module's arguments on every rank (rank 0 writes `out`)."""
    spec = ";".join(f"{c.layers},{c.batch},{c.context}" for c in cases)
    argv = ["--device", device, "--shape", json.dumps(dataclasses.asdict(shape)), "--cases", spec, "--out", out,
            "--reps", str(fixed_reps)]
    if quick:
        argv.append("--quick")
    if dump:
        argv += ["--dump", dump]
    return argv


def run_torchrun(shape: DecoderShape, cases: list[DecodeCase], tp: int, device: str, work_dir: Path,
                 quick: bool, fixed_reps: int, dump: Optional[str] = None, timeout_s: float = 300.0,
                 progress: bool = False) -> list[dict]:
    """Start `tp` ranks with torchrun, wait, and return rank 0's records. `timeout_s` bounds
    each collective; on KeyboardInterrupt or UserError `saved_rows(work_dir)` has the cases
    rank 0 finished."""
    from inferecon.harness import torchrun

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / TP_ROWS
    out.unlink(missing_ok=True)  # a previous world's rows are stored already, not this one's
    argv = rank_argv(shape, cases, device, str(out), quick, fixed_reps, dump)
    launch = torchrun.Launch(module=RANKS_MODULE, argv=tuple(argv), nproc_per_node=tp, run_dir=work_dir,
                             timeout_s=timeout_s, progress_prefix=PROGRESS_PREFIX if progress else "",
                             what="decode_tp")
    torchrun.relaunch(launch, None)
    if dump:
        return []
    return json.loads(out.read_text())


def saved_rows(work_dir: Path) -> list[dict]:
    """The records rank 0 saved so far in `work_dir` (all of them once the world finished)."""
    try:
        return json.loads((Path(work_dir) / TP_ROWS).read_text())
    except (OSError, ValueError):
        return []


def _parse_cases(text: str) -> list[DecodeCase]:
    try:
        return [DecodeCase(*map(int, part.split(","))) for part in text.split(";") if part]
    except (TypeError, ValueError):
        raise UserError(f"--cases: expected 'layers,batch,context;...', got {text!r}") from None


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {RANKS_MODULE}",
                                description="decode-step benchmark (started by torchrun on every rank)")
    p.add_argument("--device", choices=("cuda", "cpu"), required=True)
    p.add_argument("--shape", required=True, help="DecoderShape as JSON")
    p.add_argument("--cases", required=True, help="layers,batch,context;...")
    p.add_argument("--out", default=None, help="JSON file rank 0 writes")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions (the same on every rank)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dump", default=None, help="numerics check: save rank 0's hidden state and tokens")
    args = p.parse_args(argv)
    return exit_status(lambda: run_in_world(_shape_from_json(args.shape), _parse_cases(args.cases), args.device,
                                            args.out, args.quick, args.reps, args.dump))


if __name__ == "__main__":
    raise SystemExit(main())
