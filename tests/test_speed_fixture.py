"""Speed changes leave every figure as it was: the collective model, the cost model (four terms
and op level) and whole predict commands against outputs recorded before the speed work
(tests/fixtures/speed, README there says from which commit). Re-record only for an intended
change of the figures."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from inferecon.model import network as net
from inferecon.model.terms import Layouts

HERE = Path(__file__).resolve().parent / "fixtures" / "speed"
_spec = importlib.util.spec_from_file_location("speed_fixture", HERE / "make_fixture.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)
RTOL = 1e-12
HINT = "differs from tests/fixtures/speed (re-record only if the model change is intended, see its README)"


@pytest.fixture(scope="module")
def expected():
    with np.load(HERE / "expected.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def profiles():
    return fx.profiles()


def test_collective_times_as_recorded(expected, profiles):
    g, s, b = fx.collective_grid()
    for label, (hw, _) in profiles.items():
        for op in fx.OPS:
            got = net.collective_time_s(hw, op, g, s, b)
            np.testing.assert_allclose(got, expected[f"net/{label}/{op}"], rtol=RTOL, atol=0,
                                       err_msg=f"{label} {op} {HINT}")


def test_collective_times_one_element_at_a_time_as_recorded(expected, profiles):
    # Scalars through the same function (predict's path): a cache of a whole grid's shapes must
    # not change one configuration's answer.
    g, s, b = fx.collective_grid()
    rows = np.random.default_rng(1).choice(g.size, 40, replace=False)
    hw = profiles["opdb_ops"][0]
    for op in fx.OPS:
        want = expected[f"net/opdb_ops/{op}"][rows]
        got = [float(net.collective_time_s(hw, op, g[i], s[i], b[i])) for i in rows]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, err_msg=f"{op} {HINT}")


@pytest.mark.parametrize("label", ["published", "paper", "opdb_four_terms", "opdb_ops"])
def test_step_costs_as_recorded(expected, profiles, label):
    from inferecon.model.catalog import get_model

    hw, eng = profiles[label]
    for name, draft in (("llama-3-70b", None), ("llama-3-70b", "llama-3-8b"), ("deepseek-v3", None)):
        case = f"{name}{'+draft' if draft else ''}"
        tp_r, tp_c, pp, ep, mb, gamma = expected[f"lay/{case}"]
        lay = Layouts(tp_r=tp_r, tp_c=tp_c, pp=pp, ep=ep, micro_batch=mb, gamma=gamma)
        cost = fx.evaluate_case(get_model(name), get_model(draft) if draft else None, hw, eng, lay)
        for f in fx.FIELDS:
            np.testing.assert_allclose(np.asarray(getattr(cost, f), dtype=float), expected[f"cost/{label}/{case}/{f}"],
                                       rtol=RTOL, atol=0, err_msg=f"{label} {case} {f} {HINT}")
        assert (np.asarray(cost.feasible) == expected[f"cost/{label}/{case}/feasible"]).all()
        assert (np.asarray(cost.dominant).astype("U10") == expected[f"cost/{label}/{case}/dominant"]).all()


def test_predict_commands_print_as_recorded(monkeypatch):
    monkeypatch.chdir(fx.ROOT)
    want = (HERE / "predict_expected.txt").read_text().split("\n$ inferecon ")
    for argv, recorded in zip(fx.PREDICT, want):
        got = fx.predict_text(argv)
        assert got.removeprefix("$ inferecon ") == recorded.removeprefix("$ inferecon "), f"{argv}: {HINT}"
