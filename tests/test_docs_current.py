"""The README and docs/ show what the commands print today.

Their example outputs are written by scripts/make_docs.py between `<!-- example: NAME -->`
markers. Here the fast, deterministic examples are re-run and compared byte for byte with the
committed text (a change of the model that moves a figure fails this until
`python scripts/make_docs.py` is re-run); machine-dependent (recorded) examples are checked for
their structure only: the machine and date they ran on, the command, an exit status. And the
README stays a front page: at most 200 lines, every docs/ link resolves, none into ../shared.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_docs"] = mod  # its dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    return mod


md = _make_docs()


def _bodies() -> dict[str, list[tuple[Path, str]]]:
    out: dict[str, list[tuple[Path, str]]] = {}
    for doc in md.DOCS:
        text = doc.read_text()
        for name, start, end in md.blocks(text):
            out.setdefault(name, []).append((doc, text[start:end]))
    return out


BODIES = _bodies()
FAST = sorted(n for n in BODIES if n in md.EXAMPLES and md.EXAMPLES[n].kind == md.FAST)
RECORDED = sorted(n for n in BODIES if n in md.EXAMPLES and md.EXAMPLES[n].kind == md.RECORDED)


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the limit is 200 (move detail into docs/)"


def test_readme_links_resolve_and_stay_in_the_repository():
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(l.startswith("docs/") for l in links), "README links into docs/ nowhere"
    for link in links:
        assert "../shared" not in link and "shared/reference" not in link, f"README links outside the repository: {link}"
        if link.startswith(("http://", "https://", "#")):
            continue
        assert (ROOT / link.split("#")[0]).exists(), f"README links to {link}, which does not exist"
    assert "../shared" not in text, "README mentions ../shared: it has to stand alone"


def test_docs_links_resolve():
    for doc in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if link.startswith(("http://", "https://", "#")):
                continue
            assert (doc.parent / link.split("#")[0]).resolve().exists(), f"{doc.name} links to {link}, which does not exist"


def test_every_marked_example_is_defined_and_the_readme_has_the_five_commands():
    assert set(BODIES) <= set(md.EXAMPLES), f"undefined examples: {set(BODIES) - set(md.EXAMPLES)}"
    readme = {name for name, _, _ in md.blocks(README.read_text())}
    for command in ("predict", "frontier", "calibrate", "validate", "regress"):
        assert any(md.EXAMPLES[n].commands[-1].startswith(f"inferecon {command}") for n in readme), \
            f"README has no example of `inferecon {command}`"


def test_blocks_are_filled():
    for name, found in BODIES.items():
        for doc, body in found:
            assert "(exit status " in body, f"{doc.name}: example {name!r} is empty: run python scripts/make_docs.py"


@pytest.mark.parametrize("name", FAST)
def test_fast_example_is_current(name):
    ex = md.EXAMPLES[name]
    now = md.render(ex, md.run_example(ex))
    for doc, body in BODIES[name]:
        assert body == now, (f"{doc.relative_to(ROOT)}: example {name!r} is stale (the command prints something "
                             "else now): run python scripts/make_docs.py and commit the result")


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_example_says_where_and_when(name):
    ex = md.EXAMPLES[name]
    for doc, body in BODIES[name]:
        assert body.strip(), f"{doc.name}: recorded example {name!r} is empty: run python scripts/make_docs.py --record"
        label = body.splitlines()[0]
        assert label.startswith("*Recorded run*"), f"{doc.name}: {name!r} does not say it is a recorded run"
        assert re.search(r"\d+ cores", label) and re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", label), \
            f"{doc.name}: {name!r} does not name its machine and date: {label!r}"
        assert "load average" in label
        shown = [ex.commands[i] for i in ex.show] if ex.show else list(ex.commands)
        for command in shown:
            assert f"$ {command}\n" in body, f"{doc.name}: {name!r} lacks the output of `{command}`"
        assert len(re.findall(r"\(exit status \d+\)", body)) == len(shown)


def test_render_says_what_it_left_out():
    # 30 output lines cut to 10: 8 from the head, the last 2, and a line counting the 20 between.
    ex = md.Example("cut", ("inferecon x",), max_lines=10)
    text = md.render(ex, [md.Ran("inferecon x", "".join(f"line {i}\n" for i in range(30)), 0)])
    assert "line 7\n… (20 lines left out here)\nline 28\nline 29\n(exit status 0)" in text
    assert "line 8\n" not in text


def test_a_wall_time_alone_does_not_make_an_example_stale():
    # calibrate-files prints how long its fit took; that number alone changing keeps the old text.
    a = "note: kept latency (published)\n\nfitted in 1.1 s; wrote cal-files/profile.json\n"
    assert md.same_but_timing("calibrate-files", a, a.replace("1.1 s", "23.4 s"))
    assert not md.same_but_timing("calibrate-files", a, a.replace("latency", "memory"))
    assert not md.same_but_timing("predict", a, a.replace("1.1 s", "23.4 s"))  # predict prints no timing
