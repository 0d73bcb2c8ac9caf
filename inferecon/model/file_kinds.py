"""What kind of input file a JSON object is, so that a file given to the wrong flag is refused
with what it is and where it goes ("looks like a model config.json, not a hardware profile:
pass it as --model") instead of the first field the loader misses.

The signs are the fields each kind cannot be without: a hardware profile's memory, compute
and network sections (model/hardware.py), an engine profile's step_overhead_us and
per_layer_us (model/engine.py), a Hugging Face config's hidden size or architectures
(model/spec.py reads hidden_size / n_embd / d_model), and the two files a calibration run
writes beside its profile.json (calibration.json, manifest.json).
"""

from __future__ import annotations

HARDWARE = "hardware profile"
ENGINE = "engine profile"
MODEL = "model config.json"
CALIBRATION = "calibration summary (calibration.json)"
MANIFEST = "run manifest (manifest.json)"

# The flag each loadable kind is given with; the two run files say where their profile is.
_WHERE = {
    HARDWARE: "pass it as --hardware",
    ENGINE: "pass it as --engine",
    MODEL: "pass it as --model",
    CALIBRATION: "the hardware profile is the profile.json beside it",
    MANIFEST: "a run's hardware profile is calibrate/profile.json inside it",
}


def json_kind(data) -> str | None:
    """The kind of file `data` (a parsed JSON value) looks like, or None when none fits."""
    if not isinstance(data, dict):
        return None
    keys = data.keys()
    if {"memory", "compute", "network"} <= keys:
        return HARDWARE
    if {"step_overhead_us", "per_layer_us"} <= keys:
        return ENGINE
    inner = data.get("text_config") if isinstance(data.get("text_config"), dict) else {}
    if keys & {"hidden_size", "n_embd", "d_model", "architectures", "model_type"} or "hidden_size" in inner:
        return MODEL
    if {"profile", "fits"} <= keys:
        return CALIBRATION
    if {"run_kind", "benchmarks"} <= keys:
        return MANIFEST
    return None


def check_kind(data, expected: str, source: str, hint: str = "") -> None:
    """A UserError naming what `data` is and where it goes, where it looks like another kind
    of file than `expected`; nothing where it looks like `expected` or like nothing known (the
    loader's own field checks then say what is missing). `hint` ends the line: where a file of
    the expected kind comes from."""
    from inferecon.core.errors import UserError

    kind = json_kind(data)
    if kind is not None and kind != expected:
        raise UserError(f"{source}: looks like {_a(kind)}, not {_a(expected)}: {_WHERE[kind]}{hint}")


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind
