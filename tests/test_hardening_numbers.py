"""One number parser with bounds (inferecon/cli_args.py): every count, size and price a command
reads is refused in one line while the command line is parsed when it is not a finite number in
the range a person would expect — huge integers, exponents where a count is due, NaN, infinity."""

import pytest

from cli_check import one_line_error

# (command prefix, flag, bad value, fragment of the one-line refusal). The bounds are the ones
# cli_args documents: batch 1..2^20, gamma 1..64, price $0.001..$1000 per GPU-hour, threads
# 1..4096, tp/pp/ep 1..65,536, context 0..10M tokens.
PREDICT = ["predict", "--model", "llama-3-8b"]
CASES = [
    (PREDICT, "--batch", "99999999999999999999999", "must be from 1 to 1,048,576"),
    (PREDICT, "--batch", "1e12", "must be a whole number from 1 to 1,048,576"),
    (PREDICT, "--batch", "8,inf", "must be a whole number"),
    (PREDICT, "--batch", "-1", "must be from 1"),
    (PREDICT, "--batch", ",", "no batch sizes given"),
    (PREDICT + ["--spec-decode", "llama-3-8b"], "--gamma", "1000000", "must be from 1 to 64"),
    (PREDICT + ["--spec-decode", "llama-3-8b"], "--gamma", "0", "must be from 1 to 64"),
    (PREDICT, "--price", "1e-300", "must be a finite number in [0.001, 1000]"),
    (PREDICT, "--price", "nan", "must be a finite number"),
    (PREDICT, "--price", "1e400", "must be a finite number"),
    (PREDICT, "--tp", "1e3", "must be a whole number from 1 to 65,536"),
    (PREDICT, "--pp", "99999999999999999999", "must be from 1 to 65,536"),
    (PREDICT, "--ep", "0", "must be from 1 to 65,536"),
    (PREDICT, "--context", "1e9", "must be a whole number"),
    (PREDICT, "--context", "20000000", "must be from 0 to 10,000,000"),
    (["frontier", "--model", "llama-3-8b"], "--price", "1e-300", "must be a finite number in [0.001, 1000]"),
    (["frontier", "--model", "llama-3-8b"], "--max-gpus", "1" + "0" * 5000, "must be a whole number"),
    (["bench", "launch", "--device", "cpu"], "--threads", "1000000", "must be from 1 to 4,096"),
    (["calibrate", "--device", "cpu"], "--threads", "1e6", "must be a whole number from 1 to 4,096"),
    (["validate", "--model", "tiny-llama"], "--threads", "1000000", "must be from 1 to 4,096"),
    (["validate", "--model", "tiny-llama"], "--layers", "1e12", "must be a whole number"),
    (["regress"], "--baseline-runs", "1e12", "must be a whole number from 1 to 1,000"),
]


@pytest.mark.parametrize("prefix, flag, value, fragment", CASES, ids=[f"{c[0][0]}{c[1]}={c[2][:12]}" for c in CASES])
def test_bad_number_is_one_line(capsys, prefix, flag, value, fragment):
    line = one_line_error(capsys, prefix + [flag, value])
    assert flag in line and fragment in line, line
