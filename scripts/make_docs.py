"""Write the real output of every example in README.md and docs/*.md between its markers.

    python scripts/make_docs.py              # the deterministic examples (about a minute on 2 cores)
    python scripts/make_docs.py --fast       # only the fast ones (those tests/test_docs_current.py re-runs)
    python scripts/make_docs.py --record     # also the machine-dependent ones (CPU calibrate,
                                             #   validate, regress: a few minutes)
    python scripts/make_docs.py --only predict,frontier
    python scripts/make_docs.py --check      # change nothing; exit 1 naming every stale example

A document marks an example with

    <!-- example: NAME -->
    ... (whatever is here is replaced) ...
    <!-- /example -->

and this script writes there the commands of EXAMPLES[NAME] with what they printed and their
exit status. Figures in the documents are never pasted by hand: they come from here, so a
change in the model shows up as a diff of the docs when this is re-run. Re-running it with
nothing changed rewrites nothing (the output of a deterministic command is the same bytes).

Examples whose output depends on the machine (timings, calibrations on this CPU) are only run
with --record, and their block says on which machine, when, and at what load they ran; the
test checks only their structure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Kinds of example:
#   fast      deterministic and quick: re-run by every make_docs run and by the currency test
#   slow      deterministic but seconds to a minute each (benchmarks/*.py): re-run by make_docs
#   recorded  machine-dependent: only with --record; the block names the machine and the date
FAST, SLOW, RECORDED = "fast", "slow", "recorded"


@dataclass(frozen=True)
class Example:
    name: str
    commands: tuple[str, ...]      # each starts with `inferecon` or `python`; run in order, one folder
    kind: str = FAST
    show: tuple[int, ...] = ()     # which commands' output to print (default: all)
    markdown: bool = False         # the output is a markdown table: written as is, not fenced
    max_lines: int = 0             # keep N lines of each output, its head and last two (0: all); the cut is said
    needs: tuple[str, ...] = field(default=())  # paths (from the repository root) the example reads
    expect: tuple[int, ...] = (0,)  # exit statuses the example shows; any other is a failure, not a doc
    vary: str = ""                 # regex of what changes from run to run (a wall time): where the rest is
                                   # unchanged, the committed text is kept, so a re-run rewrites nothing


EXAMPLES: dict[str, Example] = {e.name: e for e in [
    Example("predict", ("inferecon predict --model llama-3-70b --gpu h100 --tp 4 --batch 1,16,64,256 "
                        "--context 8192 --precision 8",)),
    Example("predict-error", ("inferecon predict --model llama-3-7b --tp 4",
                              "inferecon predict --model llama-3-70b --tp 3"), expect=(2,)),
    Example("predict-tp8", ("inferecon predict --model llama-3-70b --tp 8 --batch 16",)),
    Example("predict-json", ("inferecon predict --model mixtral-8x7b --tp 2 --ep 4 --batch 64 --json --draws 0",)),
    Example("serving-predict", ("inferecon predict --model llama-3-70b --tp 2 --precision 8 --kv-precision 8 "
                                "--input-len 5000 --output-len 500 --concurrency 25 --draws 0",)),
    # A whole request-frontier search before the refusal (about 2 s): slow, as frontier-no-band.
    Example("serving-sla", ("inferecon frontier --model llama-3-70b --input-len 2000 --output-len 200 --ttft-ms 20 "
                            "--draws 0",), kind=SLOW, expect=(2,)),
    Example("frontier", ("inferecon frontier --model llama-3-70b --gpu h100-sxm --rows 6",)),
    # A second frontier would double the currency test's time (pandas, matplotlib, the PNG): slow.
    Example("frontier-no-band", ("inferecon frontier --model llama-3-70b --gpu h100-sxm --draws 0",), kind=SLOW),
    Example("specs", ("inferecon specs",)),
    Example("calibrate-files", ("inferecon calibrate --nccl-tests tests/fixtures/ingest/synthetic_all_reduce_perf_8xh100.txt "
                                "--gpu h100-sxm --out cal-files",), kind=SLOW, vary=r"fitted in [0-9.]+ s",
            needs=("tests/fixtures/ingest/synthetic_all_reduce_perf_8xh100.txt",)),
    Example("engine-validate", ("inferecon validate --engine-results "
                                "tests/fixtures/engines/vllm_bench_serve_llama-3.1-8b_c8.json "
                                "tests/fixtures/engines/sglang_bench_serving.jsonl --model llama-3-8b --gpu h100 "
                                "--tp 1 --out engine-check",), kind=SLOW,
            needs=("tests/fixtures/engines",)),
    Example("paper-parity", ("python benchmarks/paper_parity.py",), kind=SLOW, markdown=True),
    Example("accuracy", ("python benchmarks/accuracy.py --markdown",), kind=SLOW, markdown=True),
    Example("uncertainty-bands", ("python benchmarks/uncertainty_bands.py",), kind=SLOW),
    Example("public-network", ("python benchmarks/bench_public_network.py --markdown",), kind=SLOW,
            markdown=True, needs=("../shared/reference/measured",)),
    # Machine-dependent: a CPU calibration, a decode validated against it, and the gate run on
    # two calibrations of the same machine.
    Example("calibrate-cpu", ("inferecon calibrate --device cpu --quick --no-progress --out results/cal-cpu",),
            kind=RECORDED, max_lines=12),
    Example("validate-cpu", ("inferecon calibrate --device cpu --quick --no-progress --out results/cal-cpu",
                             "inferecon validate --hardware results/cal-cpu/profile.json --model tiny-llama "
                             "--no-progress"),
            kind=RECORDED, show=(1,)),
    Example("regress-cpu", ("inferecon calibrate --device cpu --quick --no-progress --out results/cpu-a",
                            "inferecon calibrate --device cpu --quick --no-progress --out results/cpu-b",
                            "inferecon regress --baseline results/cpu-a --candidate results/cpu-b"),
            kind=RECORDED, show=(2,), max_lines=12, expect=(0, 1, 3, 4)),  # whatever the gate says
]}

BEGIN = re.compile(r"<!-- example: ([\w.-]+) -->\n")
END = "<!-- /example -->"


class ExampleFailed(Exception):
    """An example crashed or exited with a status it does not show: its block is left as it is."""


class ExampleSkipped(Exception):
    """An example's inputs are not on this machine (the public tables beside the project): its
    block is left as it is, and that is no failure."""


@dataclass(frozen=True)
class Ran:
    command: str
    output: str
    status: int


def _run_in_process(command: str, cwd: Path) -> Ran:
    """An `inferecon` command through the CLI's own main(), stdout and stderr as one stream:
    no interpreter start-up per example, which keeps the currency test fast."""
    from inferecon.cli import main

    buf = io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                status = main(shlex.split(command)[1:])
            except SystemExit as exc:  # argparse's own errors
                status = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # a bug (a traceback): never written into a document
                raise ExampleFailed(f"`{command}` raised {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(here)
    return Ran(command, buf.getvalue(), int(status or 0))


def _run_subprocess(command: str, cwd: Path, *, stderr_too: bool) -> Ran:
    argv = shlex.split(command)
    if argv[0] == "inferecon":
        argv = [sys.executable, "-m", "inferecon", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    proc = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True)
    out = proc.stdout
    if proc.returncode:
        # Shown to whoever runs make_docs, so a failed recording can be diagnosed.
        sys.stderr.write(f"make_docs: `{command}` exited {proc.returncode}; its stderr ends:\n"
                         + "".join(proc.stderr.splitlines(keepends=True)[-15:]))
    if stderr_too or proc.returncode:
        # A failing command's message is on stderr; progress lines of a long one are not wanted.
        err = proc.stderr if stderr_too else "".join(
            line for line in proc.stderr.splitlines(keepends=True) if line.startswith("inferecon"))
        out += err
    return Ran(command, out, proc.returncode)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{gpu or ', no GPU'}"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_example(ex: Example) -> list[Ran]:
    """Every command of `ex`, in order, in one fresh folder (relative paths in the commands
    land there); the repository's files named in `needs` are read from the repository."""
    with tempfile.TemporaryDirectory(prefix=f"make-docs-{ex.name}-") as tmp:
        tmp_path = Path(tmp)
        for need in ex.needs:
            src = (ROOT / need).resolve()
            if not src.exists():
                raise ExampleSkipped(f"needs {need}, which is not here")
            if not need.startswith(".."):
                dest = tmp_path / need
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(src)
        ran = []
        for command in ex.commands:
            if command.startswith("python "):
                r = _run_subprocess(command, ROOT, stderr_too=False)  # benchmarks read paths from the root
            elif ex.kind == RECORDED:
                r = _run_subprocess(command, tmp_path, stderr_too=False)
            else:
                r = _run_in_process(command, tmp_path)
            if r.status not in ex.expect:
                raise ExampleFailed(f"`{command}` exited {r.status} (expected {ex.expect}); output ends: "
                                    + " | ".join(r.output.strip().splitlines()[-3:]))
            ran.append(Ran(r.command, r.output.replace(tmp, "."), r.status))
    return ran


def render(ex: Example, ran: list[Ran]) -> str:
    """The text between the markers."""
    shown = [ran[i] for i in ex.show] if ex.show else ran
    parts = []
    if ex.kind == RECORDED:
        when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        setup = [r.command for r in ran if r not in shown]
        line = f"*Recorded run* (machine-dependent; `python scripts/make_docs.py --record`): {_machine()}, {when}, load average {_load()}."
        if setup:
            line += " Run first: " + "; ".join(f"`{c}`" for c in setup) + "."
        parts.append(line)  # the fence follows on the next line (a fence may interrupt a paragraph)
    fenced = []  # the plain-text outputs, in one fence
    for r in shown:
        out = r.output.rstrip("\n")
        lines = out.splitlines()
        if ex.max_lines and len(lines) > ex.max_lines:
            # Head and the last two lines: a verdict or a summary is usually last.
            head, tail = lines[:ex.max_lines - 2], lines[-2:]
            out = "\n".join([*head, f"… ({len(lines) - len(head) - len(tail)} lines left out here)", *tail])
        if ex.markdown:
            # A table needs a blank line above it to render after a line of text.
            out = re.sub(r"(?m)^([^|\n].*)\n\|", r"\1\n\n|", out)
            parts.append(f"`$ {r.command}` (exit status {r.status}):\n\n{out}\n")
        else:
            fenced.append(f"$ {r.command}\n{out}\n(exit status {r.status})\n")
    if fenced:
        parts.append("```text\n" + "".join(fenced) + "```\n")
    return "\n".join(parts)


def blocks(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each example's body in `text` (between the two markers)."""
    found = []
    for m in BEGIN.finditer(text):
        end = text.find(END, m.end())
        if end < 0:
            raise ValueError(f"example {m.group(1)!r} has no closing {END}")
        found.append((m.group(1), m.end(), end))
    return found


def used_examples() -> dict[str, list[Path]]:
    names: dict[str, list[Path]] = {}
    for doc in DOCS:
        if doc.exists():
            for name, _, _ in blocks(doc.read_text()):
                names.setdefault(name, []).append(doc)
    return names


def same_but_timing(name: str, old: str, new: str) -> bool:
    """Whether two renderings of `name` differ only where its output varies by itself."""
    vary = EXAMPLES[name].vary if name in EXAMPLES else ""
    return bool(vary) and re.sub(vary, "", old) == re.sub(vary, "", new)


def update(docs: list[Path], rendered: dict[str, str]) -> list[Path]:
    """Write `rendered` bodies into the documents; returns the documents that changed."""
    changed = []
    for doc in docs:
        text = doc.read_text()
        new, last = [], 0
        for name, start, end in blocks(text):
            new.append(text[last:start])
            old = text[start:end]
            body = rendered.get(name, old)
            new.append(old if same_but_timing(name, old, body) else body)
            last = end
        new.append(text[last:])
        out = "".join(new)
        if out != text:
            tmp = doc.with_suffix(".md.tmp")
            tmp.write_text(out)
            tmp.replace(doc)  # atomic: an interrupted run leaves the old document whole
            changed.append(doc)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="only the fast examples")
    ap.add_argument("--record", action="store_true", help="also the machine-dependent examples")
    ap.add_argument("--only", default="", help="comma-separated example names")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a fast or slow example is stale")
    args = ap.parse_args(argv)

    used = used_examples()
    unknown = sorted(set(used) - set(EXAMPLES))
    if unknown:
        print(f"make_docs: error: documents mark examples that EXAMPLES does not define: {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    if only - set(EXAMPLES):
        print(f"make_docs: error: unknown example(s) {', '.join(sorted(only - set(EXAMPLES)))}", file=sys.stderr)
        return 2
    kinds = {FAST} if args.fast else {FAST, SLOW} | ({RECORDED} if args.record else set())
    todo = [EXAMPLES[n] for n in used if (n in only if only else EXAMPLES[n].kind in kinds)]
    rendered, stale, failed = {}, [], []
    for ex in todo:
        try:
            ran = run_example(ex)
        except ExampleSkipped as exc:
            print(f"make_docs: {ex.name}: left as it was: {exc}", file=sys.stderr)
            continue
        except ExampleFailed as exc:
            print(f"make_docs: {ex.name}: FAILED, left as it was: {exc}", file=sys.stderr)
            failed.append(ex.name)
            continue
        rendered[ex.name] = render(ex, ran)
        print(f"make_docs: {ex.name}: " + ", ".join(f"exit {r.status}" for r in ran), file=sys.stderr)
    if args.check:
        for doc in DOCS:
            text = doc.read_text()
            for name, start, end in blocks(text):
                if (name in rendered and EXAMPLES[name].kind != RECORDED and text[start:end] != rendered[name]
                        and not same_but_timing(name, text[start:end], rendered[name])):
                    stale.append(f"{doc.relative_to(ROOT)}: {name}")
        for s in stale:
            print(f"make_docs: stale: {s}", file=sys.stderr)
        return 1 if stale else 0
    for doc in update([d for d in DOCS if d.exists()], rendered):
        print(f"make_docs: updated {doc.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
