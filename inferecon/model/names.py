"""Names that tell models and hardware profiles apart in a table, a CSV and a plot legend.

Two config.json files in one folder, or two calibrated profiles of the same GPU model, must
never share a name: the frontier keys its curves and CSV rows by these names, and a collision
silently drops a curve or prints one profile's figures under the other's name.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from inferecon.core.errors import RequestError, load_json


def _config_facts(entry: str) -> tuple[str | None, str | None, Path]:
    """(_name_or_path, model_type, config path) of a config.json entry."""
    path = Path(entry)
    if path.is_dir():
        path = path / "config.json"
    cfg = load_json(path, "config.json")
    if not isinstance(cfg, dict):
        return None, None, path
    name = cfg.get("_name_or_path")
    mtype = cfg.get("model_type")
    return (str(name).strip() or None) if name else None, (str(mtype) if mtype else None), path


def _is_config(entry: str, spec) -> bool:
    return spec.source.startswith("Hugging Face config")


def model_display_names(entries: list[str], specs: list, names: list[str] | None = None) -> list[str]:
    """One distinct display name per model entry.

    Order of preference: the user's own name; a catalog model's own name; a config's
    `_name_or_path`; the config file's stem (its folder's name when the file is just
    "config.json"). Names that still collide get the config's `model_type`, then the path as
    given. The same model named twice is refused: it would be one curve drawn twice."""
    if names is not None and len(names) != len(entries):
        raise RequestError("name", ",".join(names), f"{len(names)} name(s) for {len(entries)} model(s): "
                           "give one per model, in order")
    keys = []
    for entry, spec in zip(entries, specs):
        key = str(Path(entry).resolve()) if _is_config(entry, spec) else spec.name
        if key in keys:
            raise RequestError("model", entry, "the same model is given twice")
        keys.append(key)
    if names is not None:
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup or any(not n for n in names):
            raise RequestError("name", ",".join(names), "names must be distinct and non-empty "
                               f"(repeated: {', '.join(dup) or 'an empty name'})")
        return list(names)

    facts = [(_config_facts(e) if _is_config(e, s) else (None, None, None)) for e, s in zip(entries, specs)]
    out = []
    for (entry, spec), (own, _mtype, path) in zip(zip(entries, specs), facts):
        if path is None:
            out.append(spec.name)
        elif own:
            out.append(own)
        else:
            out.append(path.parent.resolve().name if path.stem == "config" else path.stem)
    for refine in (lambda i: f"{out[i]} ({facts[i][1]})" if facts[i][1] else out[i],
                   lambda i: entries[i] if facts[i][2] is not None else out[i]):
        counts = Counter(out)
        out = [refine(i) if counts[n] > 1 else n for i, n in enumerate(out)]
    counts, seen = Counter(out), Counter()
    final = []
    for n in out:  # last resort: numbered (two different paths that print the same)
        seen[n] += 1
        final.append(f"{n} #{seen[n]}" if counts[n] > 1 else n)
    return final


def profile_labels(profiles: list, sources: list[str | None]) -> list[str]:
    """One distinct label per hardware profile: a published profile's catalog name; a
    calibrated one's name plus the run it was fitted to (two nodes of one GPU model share
    the name, never the run); failing that, the file it was read from."""
    out = []
    for hw, src in zip(profiles, sources):
        run = hw.provenance.run_id
        if hw.provenance.kind == "published" or not (run or src):
            out.append(hw.name)
        else:
            out.append(f"{hw.name} [{run or Path(src).parent.name}]")
    counts = Counter(out)
    out = [f"{n} [{src}]" if counts[n] > 1 and src else n for n, src in zip(out, sources)]
    counts, seen = Counter(out), Counter()
    final = []
    for n in out:
        seen[n] += 1
        final.append(f"{n} #{seen[n]}" if counts[n] > 1 else n)
    return final
