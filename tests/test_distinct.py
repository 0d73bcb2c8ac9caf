"""Distinct rows of configuration arrays (model/distinct.py) and the op-level model's pricing of
ops once per distinct row (model/ops.py _Rows): rows worked out by hand, and the keyed search
path against the element-wise path it replaces, bit for bit."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inferecon.model import ops
from inferecon.model.catalog import get_model
from inferecon.model.distinct import distinct_rows
from inferecon.model.engine import EngineProfile
from inferecon.model.frontier import SearchSpace, build_layouts
from inferecon.model.hardware import HardwareProfile
from inferecon.model.published import get_profile
from inferecon.model.terms import Layouts, evaluate

FIT = Path(__file__).resolve().parent / "fixtures" / "speed" / "opdb-h100-vllm"


def test_rows_by_hand():
    # Rows (1, 5), (2, 5), (1, 5), (2, 6), (3, 5): four distinct, the first and third the same.
    a = np.array([1, 2, 1, 2, 3])
    b = np.array([5.0, 5.0, 5.0, 6.0, 5.0])
    inv, rep = distinct_rows((a, b), a.shape)
    assert rep.size == 4
    assert inv[0] == inv[2]
    assert len({int(inv[i]) for i in (0, 1, 3, 4)}) == 4
    # Each representative holds its row's values.
    assert (a.take(rep)[inv] == a).all() and (b.take(rep)[inv] == b).all()


def test_one_value_everywhere_is_one_row():
    inv, rep = distinct_rows((np.full(6, 4.0), np.asarray(7)), (6,))
    assert rep.size == 1 and (inv == 0).all()


@pytest.mark.parametrize("bad", [np.array([1.0, 2.5]), np.array([-1, 2]), np.array([1, 2 ** 20])])
def test_what_cannot_be_keyed_says_so(bad):
    # Fractions, negatives and values past 2^20 are not packed into a key: the caller prices
    # every element as it is.
    assert distinct_rows((bad, np.array([1, 1])), (2,)) is None


def test_a_column_cache_gives_the_same_rows():
    a = np.array([3, 1, 3, 1, 2])
    b = np.array([0, 0, 0, 1, 1])
    c = np.array([9, 9, 8, 8, 9])
    # (a, b): (3, 0) (1, 0) (3, 0) (1, 1) (2, 1), four rows; (a, c): five.
    codes: dict = {}
    first = distinct_rows((a, b), a.shape, codes)
    second = distinct_rows((a, c), a.shape, codes)  # a's codes come from the cache
    for (inv, rep), cols in ((first, (a, b)), (second, (a, c))):
        for x in cols:
            assert (x.take(rep)[inv] == x).all()
    assert first[1].size == 4 and second[1].size == 5


def _elementwise(monkeypatch):
    # The path before the keyed pricing: every configuration its own row.
    monkeypatch.setattr(ops, "distinct_rows", lambda cols, shape, codes=None: None)


@pytest.mark.parametrize("name", ["llama-3-70b", "deepseek-v3", "mixtral-8x7b"])
def test_keyed_search_arrays_equal_the_elementwise_ones(monkeypatch, name):
    # The kept op-DB fit of H100 x vLLM (tests/fixtures/speed) on layouts of the default frontier
    # space drawn with repeats, as many as make the search path key its rows.
    hw = HardwareProfile.load(FIT / "profile.json")
    eng = EngineProfile.load(FIT / "engine.json")
    model = get_model(name)
    base = build_layouts(model, get_profile("h100-sxm"), SearchSpace(), with_spec=False)
    pick = np.random.default_rng(3).integers(0, len(base), ops.KEYED_FROM_CONFIGS)
    lay = Layouts(tp_r=base.tp_r[pick], tp_c=base.tp_c[pick], pp=base.pp[pick], ep=base.ep[pick],
                  micro_batch=base.micro_batch[pick], gamma=base.gamma[pick])
    calls = []
    real = ops.distinct_rows
    monkeypatch.setattr(ops, "distinct_rows", lambda *a: calls.append(1) or real(*a))
    keyed = evaluate(model, hw, lay, 4096, engine=eng)
    assert calls  # the keyed path ran
    _elementwise(monkeypatch)
    plain = evaluate(model, hw, lay, 4096, engine=eng)
    for f in dataclasses.fields(keyed):
        a, b = np.asarray(getattr(keyed, f.name)), np.asarray(getattr(plain, f.name))
        assert a.shape == b.shape and (a == b).all(), f.name


def test_draws_per_configuration_take_the_elementwise_path(monkeypatch):
    # An uncertainty band tiles configurations and puts one drawn value per configuration into
    # the fits (model/uncertainty.apply): the GEMM intercepts and attention floor here. Those
    # arrays are of the configurations, not of the distinct rows, so the keyed path must step
    # aside. Expected: each configuration equals its own evaluation with its own drawn value.
    from inferecon.model.uncertain import Uncertain
    from inferecon.model.uncertainty import apply

    hw = HardwareProfile.load(FIT / "profile.json")
    eng = EngineProfile.load(FIT / "engine.json")
    model = get_model("llama-3-70b")
    base = build_layouts(model, get_profile("h100-sxm"), SearchSpace(), with_spec=False)
    n = ops.KEYED_FROM_CONFIGS + 16
    pick = np.random.default_rng(4).integers(0, len(base), n)
    lay = Layouts(tp_r=base.tp_r[pick], tp_c=base.tp_c[pick], pp=base.pp[pick], ep=base.ep[pick],
                  micro_batch=base.micro_batch[pick], gamma=base.gamma[pick])
    items = [Uncertain("gemm t0", ("op_fits.gemm.0.t0_us",), "uniform", "synthetic", relative=True, low=0.8, high=1.2),
             Uncertain("attention floor", ("op_fits.attention.0.floor_us",), "uniform", "synthetic", relative=True,
                       low=0.8, high=1.2)]
    values = np.random.default_rng(5).uniform(0.8, 1.2, (len(items), n))
    drawn = evaluate(model, apply(hw, items, values), lay, 4096, engine=eng)
    for i in np.random.default_rng(6).choice(n, 5, replace=False):
        one = evaluate(model, apply(hw, items, values[:, i]), lay.subset([i]), 4096, engine=eng)
        assert drawn.t_step_s[i] == pytest.approx(float(one.t_step_s[0]), rel=1e-12)
