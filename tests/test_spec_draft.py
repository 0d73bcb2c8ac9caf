"""Speculative decoding: the draft proposes tokens the target verifies, so both must share one
vocabulary (tokenizer); a draft with another vocabulary size is refused in one line."""

from inferecon import cli


def test_draft_with_another_vocabulary_is_refused(capsys, tmp_path):
    # mixtral-8x7b: 32000 tokens; llama-3-70b: 128256 (their config.json files).
    rc = cli.main(["frontier", "--model", "llama-3-70b", "--spec-decode", "mixtral-8x7b", "--gpu", "h100",
                   "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "draft mixtral-8x7b has a 32000-token vocabulary, llama-3-70b 128256" in err


def test_draft_of_the_same_family_is_accepted(capsys, tmp_path):
    # llama-3-8b shares llama-3-70b's 128256-token vocabulary.
    rc = cli.main(["frontier", "--model", "llama-3-70b", "--spec-decode", "llama-3-8b", "--gpu", "h100",
                   "--out", str(tmp_path / "f")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "llama-3-8b draft" in out

