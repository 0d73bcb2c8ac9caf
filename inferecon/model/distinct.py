"""Distinct rows of the search's arrays: a frontier search prices millions of configurations,
but an op's time often depends on a few of their columns only (a collective on its group's
shape, a weight GEMM on its tokens and tensor-parallel width), which take a few hundred distinct
values together. Pricing once per distinct row and gathering gives the same element-wise figures.

Whole numbers are packed into one integer key and counted with a bincount (no sort: a few passes
over the arrays); anything else reports that it cannot be keyed, and the caller prices every
element as it is.
"""

from __future__ import annotations

import numpy as np

# Largest packed key counted with a bincount; wider keys are sorted instead.
BINCOUNT_KEYS = 1 << 22
WHOLE_BELOW = 2 ** 20  # values packed into one key: whole numbers in [0, 2^20)


def flat(x, shape):
    """x as one value (0-d) or as a flat array of every element of `shape`."""
    if x.size == 1:
        return x.reshape(())
    return (x if x.shape == shape else np.broadcast_to(x, shape)).ravel()


def whole(x):
    """x as int64 where every element is a whole number in [0, 2^20), else None."""
    if x.dtype.kind in "iub":
        xi = x.astype(np.int64, copy=False)
    else:
        xi = x.astype(np.int64)
        if not (xi == x).all():
            return None
    if xi.size and (xi.min() < 0 or xi.max() >= WHOLE_BELOW):
        return None
    return xi


def value_codes(xi):
    """(index of each element's value among the distinct values, the distinct values) of a flat
    int64 array of whole numbers below WHOLE_BELOW."""
    values = np.flatnonzero(np.bincount(xi))
    lut = np.empty(int(values[-1]) + 1, dtype=np.intp)
    lut[values] = np.arange(values.size)
    return lut[xi], values


def column_codes(c, shape):
    """(index of each element's value among the column's distinct values, how many there are) of
    an array broadcast to `shape` and flattened; (None, 1) for one value everywhere; None where
    it holds anything but whole numbers in [0, 2^20)."""
    ci = whole(flat(np.asarray(c), shape))
    if ci is None:
        return None
    if ci.ndim == 0:
        return None, 1
    idx, vals = value_codes(ci)
    return idx, vals.size


def distinct_rows(cols, shape, codes=None):
    """(inverse, representatives) of the rows of the arrays `cols` broadcast to `shape` and
    flattened: configuration i has distinct row inverse[i], and configuration representatives[j]
    holds distinct row j, so `x.take(representatives)` is, row by row, any array `x` that is a
    function of those columns alone. None where a column holds anything but whole numbers in
    [0, 2^20). `codes`: a dict that keeps each column's codes by the array's identity, for
    several calls over the same arrays (the caller keeps the arrays alive meanwhile)."""
    size = int(np.prod(shape))
    key = None
    width = 1
    for c in cols:
        got = codes.get(id(c)) if codes is not None else None
        if got is None or got[0] is not c:
            got = (c, column_codes(c, shape))
            if codes is not None:
                codes[id(c)] = got
        if got[1] is None:
            return None
        idx, n = got[1]
        if idx is None:  # one value everywhere: a factor of 1 in the key
            continue
        key = idx.copy() if key is None else key * n + idx
        width *= n
    if key is None:
        return np.zeros(size, dtype=np.intp), np.zeros(min(size, 1), dtype=np.intp)
    if width < BINCOUNT_KEYS:
        inv, keys = value_codes(key)
    else:
        keys, inv = np.unique(key, return_inverse=True)
    rep = np.empty(keys.size, dtype=np.intp)
    rep[inv] = np.arange(size)  # any configuration of each row will do: they hold the same values
    return inv, rep
