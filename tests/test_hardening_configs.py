"""Hugging Face config.json as untrusted data (model/spec_checks.py): flags that are not JSON
booleans, sizes beyond any model, numbers of thousands of digits and deep nesting are one line;
a context beyond the model's window is priced with a note."""

import json
from pathlib import Path

import pytest

from cli_check import one_line_error
from inferecon import cli

BASE = json.loads((Path(__file__).parent / "fixtures" / "hf" / "llama-3-8b.json").read_text())


def _cfg(tmp_path, text_or_dict):
    p = tmp_path / "config.json"
    p.write_text(text_or_dict if isinstance(text_or_dict, str) else json.dumps(text_or_dict))
    return str(p)


BAD = [
    ({**BASE, "tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false (a JSON boolean), got 'false'"),
    ({**BASE, "tie_word_embeddings": 0}, "tie_word_embeddings must be true or false"),
    ({**BASE, "hidden_size": 10**30}, "hidden_size a 31-digit number is beyond any model's"),
    ({**BASE, "vocab_size": 2**40}, "vocab_size 1,099,511,627,776 is beyond any model's"),
    ({**BASE, "num_hidden_layers": 1e300}, "num_hidden_layers 1e+300 is beyond any model's"),
    ({**BASE, "rope_scaling": "yarn"}, "rope_scaling must be an object or null"),
    ({**BASE, "rope_scaling": {"factor": "8"}}, "rope_scaling.factor must be a positive number"),
    ({**BASE, "max_position_embeddings": -1}, "max_position_embeddings must be positive"),
    (json.dumps(BASE)[:-1] + ', "intermediate_size": ' + "9" * 5000 + "}", "not a config.json"),
    (json.dumps(BASE)[:-1] + ', "x": ' + "[" * 50000 + "]" * 50000 + "}", "nested too deeply"),
    (json.dumps(BASE).replace('"hidden_size": 4096', '"hidden_size": 1e400'), "hidden_size must be a whole number, got inf"),
]


@pytest.mark.parametrize("cfg, fragment", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_config_is_one_line(tmp_path, capsys, cfg, fragment):
    line = one_line_error(capsys, ["predict", "--model", _cfg(tmp_path, cfg)])
    assert "config.json" in line and fragment in line, line


def test_context_beyond_the_window_is_noted(tmp_path, capsys):
    path = _cfg(tmp_path, {**BASE, "max_position_embeddings": 8192})
    assert cli.main(["predict", "--model", path, "--context", "16384", "--json"]) == 0
    out = capsys.readouterr()
    json.loads(out.out.splitlines()[0])  # stdout stays machine-readable
    assert "context 16,384 tokens is beyond the model's 8,192" in out.err
    assert cli.main(["predict", "--model", path, "--context", "8192", "--json"]) == 0
    assert "beyond the model's" not in capsys.readouterr().err


def test_rope_scaling_extends_the_window(tmp_path, capsys):
    # Llama-3.1's published config: original 8192 positions x factor 8 = 65,536 reach; its
    # max_position_embeddings says 131,072 — the larger of the two is the window.
    rope = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    path = _cfg(tmp_path, {**BASE, "max_position_embeddings": 131072, "rope_scaling": rope})
    assert cli.main(["predict", "--model", path, "--context", "131072", "--json"]) == 0
    assert "beyond" not in capsys.readouterr().err
    path = _cfg(tmp_path, {**BASE, "max_position_embeddings": 8192,
                           "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}})
    assert cli.main(["predict", "--model", path, "--context", "40000", "--json"]) == 0
    assert "beyond the model's 32,768" in capsys.readouterr().err
