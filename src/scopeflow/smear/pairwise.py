"""numpy's float32 pairwise summation, compiled: the same float32 numbers as ``np.add.reduce``,
``np.mean``, ``np.std`` and ``np.var`` of contiguous float32 data, without temporaries.

numpy sums a contiguous run of float32 values in float32 by pairwise summation: runs of at
most 128 values with 8 accumulators, longer runs split in two at a multiple of 8 near the
middle and the halves' sums added; a whole-array reduction of a C-contiguous array is one
such run. The kernels here follow that order of additions, so their sums are numpy's bit
for bit (the tests compare them).
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit

__all__ = ["var_f32"]


@njit(cache=True, nogil=True, inline="always")
def _term(a, i, m, sq):  # pragma: no cover - compiled
    # a[i], or its float32 squared deviation from m (as numpy's x = a - m; x * x)
    if sq:
        d = a[i] - m
        return d * d
    return a[i]


@njit(cache=True, nogil=True)
def _leaf(a, lo, n, m, sq):  # pragma: no cover - compiled
    # a run of at most 128 values: 8 accumulators from 8 values on, then the rest
    if n < 8:
        res = np.float32(0.0)
        for i in range(lo, lo + n):
            res += _term(a, i, m, sq)
        return res
    r0 = _term(a, lo, m, sq)
    r1 = _term(a, lo + 1, m, sq)
    r2 = _term(a, lo + 2, m, sq)
    r3 = _term(a, lo + 3, m, sq)
    r4 = _term(a, lo + 4, m, sq)
    r5 = _term(a, lo + 5, m, sq)
    r6 = _term(a, lo + 6, m, sq)
    r7 = _term(a, lo + 7, m, sq)
    i = lo + 8
    stop = lo + n - (n % 8)
    while i < stop:
        r0 += _term(a, i, m, sq)
        r1 += _term(a, i + 1, m, sq)
        r2 += _term(a, i + 2, m, sq)
        r3 += _term(a, i + 3, m, sq)
        r4 += _term(a, i + 4, m, sq)
        r5 += _term(a, i + 5, m, sq)
        r6 += _term(a, i + 6, m, sq)
        r7 += _term(a, i + 7, m, sq)
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += _term(a, i, m, sq)
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_f32(a, n, m, sq):  # pragma: no cover - compiled
    """numpy's float32 pairwise sum of ``a[:n]`` (1-D float32), from the identity 0; with
    ``sq`` of the float32 squared deviations ``(a - m)²`` (``m`` float32). The recursion
    runs on an explicit stack (numba's cache and recursion do not mix)."""
    if n <= 128:
        return _leaf(a, 0, n, m, sq)
    todo_lo = np.empty(128, np.int64)
    todo_n = np.empty(128, np.int64)  # -1: add the last two sums
    sums = np.empty(64, np.float32)
    nt = 1
    ns = 0
    todo_lo[0] = 0
    todo_n[0] = n
    while nt > 0:
        nt -= 1
        lo = todo_lo[nt]
        k = todo_n[nt]
        if k < 0:
            ns -= 1
            sums[ns - 1] = sums[ns - 1] + sums[ns]
        elif k <= 128:
            sums[ns] = _leaf(a, lo, k, m, sq)
            ns += 1
        else:
            k2 = k // 2
            k2 -= k2 % 8
            todo_n[nt] = -1
            todo_lo[nt + 1] = lo + k2
            todo_n[nt + 1] = k - k2
            todo_lo[nt + 2] = lo
            todo_n[nt + 2] = k2
            nt += 3
    return sums[0]


@njit(cache=True, nogil=True)
def _var_f32(flat):  # pragma: no cover - compiled
    n = flat.size
    m = np.float32(np.float64(pairwise_f32(flat, n, np.float32(0.0), False)) / n)
    return np.float32(np.float64(pairwise_f32(flat, n, m, True)) / n)


def var_f32(image: np.ndarray) -> float:
    """``np.var`` of a float32 image (all of it): the same float32 number, in two compiled
    passes without numpy's two image-sized temporaries.

    Parameters
    ----------
    image : numpy.ndarray
        float32 array (any shape); other dtypes are left to numpy.

    Returns
    -------
    float
        The variance (NaN for an empty image, as numpy without its warning).
    """
    a = np.asarray(image)
    if not HAVE_NUMBA or a.dtype != np.float32 or a.size == 0:
        return float(np.var(a)) if a.size else float("nan")
    return float(_var_f32(np.ascontiguousarray(a).ravel()))
