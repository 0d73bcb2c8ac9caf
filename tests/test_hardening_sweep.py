"""The bad-input sweep: every row of tests/hardening_cases.tsv run in-process through
inferecon.cli.main, ending in the expected exit status with the expected words, never a
traceback. Refusals (exit 2) are exactly one line on stderr.

Columns (tab-separated): id, category, argv, files, exit, stream, fragment.
- argv: shell words; {tmp} is the case's temporary folder, {fix} is tests/fixtures.
- files: ' ;; '-separated file specs written into {tmp} before the call:
    NAME=TEXT               TEXT as is (\\n and \\t escapes decoded)
    NAME<BASE               a copy of BASE (relative to tests/fixtures; @profile:GPU is that
                            published profile's JSON)
    NAME<BASE|{"a.b.0": v}  BASE's JSON with each dotted path set to v ("__delete__" removes it)
- exit: the expected exit status; stream: err or out, where the fragment must appear.
The expected words say what a person needs to hear (the field, the bound, the unit); they were
written from the categories of issue 23, then run."""

import csv
import json
import shlex
from pathlib import Path

import pytest

from inferecon import cli

HERE = Path(__file__).parent
FIX = HERE / "fixtures"
TABLE = HERE / "hardening_cases.tsv"


def _rows():
    with open(TABLE, newline="") as f:
        rows = [r for r in csv.DictReader((ln for ln in f if not ln.startswith("#")), delimiter="\t", quoting=csv.QUOTE_NONE)]
    return rows


def _base(base: str):
    if base.startswith("@profile:"):
        from inferecon.model.published import get_profile

        return json.dumps(get_profile(base.split(":", 1)[1]).to_dict())
    return (FIX / base).read_text()


def _set_path(doc, dotted: str, value):
    keys = dotted.split(".")
    node = doc
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value == "__delete__":
        node.pop(last, None)
    else:
        node[last] = value


def _write_files(spec: str, tmp: Path) -> None:
    for item in filter(None, (s.strip() for s in spec.split(" ;; "))):
        if "<" in item and ("=" not in item or item.index("<") < item.index("=")):
            name, rest = item.split("<", 1)
            base, _, edits = rest.partition("|")
            text = _base(base)
            if edits:
                doc = json.loads(text)
                for dotted, value in json.loads(edits).items():
                    _set_path(doc, dotted, value)
                text = json.dumps(doc)
        else:
            name, text = item.split("=", 1)
            text = text.encode().decode("unicode_escape")
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


ROWS = _rows()


def test_the_sweep_is_large_enough():
    assert len(ROWS) >= 150
    assert len({r["id"] for r in ROWS}) == len(ROWS)  # ids are unique


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_case(row, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders land here, not in the repository
    _write_files(row["files"] or "", tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{fix}", str(FIX)) for a in shlex.split(row["argv"])]
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert rc == int(row["exit"]), f"exit {rc}, stderr: {err[-2000:]}"
    text = err if row["stream"] == "err" else out
    fragment = row["fragment"].replace("{tmp}", str(tmp_path))
    assert fragment in text, f"{fragment!r} not in {row['stream']}: {text[-2000:]}"
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
