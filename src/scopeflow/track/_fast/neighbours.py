"""Compiled neighbour handling of the fits: pixel mask and the neighbours' fitted models.

* :func:`neighbour_keep` – crop pixels not closer to another bead than to the own one.
* :func:`neighbour_gauss` – the neighbours' fitted Gaussians on each crop's grid, added to
  the expected photons in the crowded-bead refit.

See :mod:`scopeflow.track._fast` for numba and the numpy fallback.
"""

from __future__ import annotations

import math

import numpy as np

from scopeflow._numba import njit

__all__ = ["neighbour_gauss", "neighbour_keep"]

_SQ2 = math.sqrt(2.0)


@njit(cache=True, nogil=True)
def _neighbour_keep(centers, pos, others, idx, ok, radius, keep):  # pragma: no cover
    n, kq = idx.shape
    k = 2 * radius + 1
    for i in range(n):
        for u in range(k):
            py = centers[i, 0] + u - radius
            for v in range(k):
                px = centers[i, 1] + v - radius
                own = (py - pos[i, 0]) ** 2 + (px - pos[i, 1]) ** 2
                kp = True
                for j in range(kq):
                    if not ok[i, j]:
                        continue
                    q = idx[i, j]
                    dn = (py - others[q, 0]) ** 2 + (px - others[q, 1]) ** 2
                    if dn < own:
                        kp = False
                        break
                keep[i, u, v] = kp


def neighbour_keep(centers, pos, others, idx, ok, radius):
    """(n, k, k) bool: crop pixels not closer to a listed neighbour than to the own bead."""
    n = len(pos)
    k = 2 * radius + 1
    keep = np.empty((n, k, k), np.bool_)
    if n:
        _neighbour_keep(np.ascontiguousarray(centers, dtype=np.float64),
                        np.ascontiguousarray(pos, dtype=np.float64),
                        np.ascontiguousarray(others, dtype=np.float64),
                        np.ascontiguousarray(idx, dtype=np.int64),
                        np.ascontiguousarray(ok, dtype=np.bool_), int(radius), keep)
    return keep


@njit(cache=True, nogil=True)
def _neighbour_gauss(cand, pos, amp, idx, ok, radius, sigma, extra):  # pragma: no cover
    n, kq = idx.shape
    k = 2 * radius + 1
    inv = 1.0 / (_SQ2 * sigma)
    ey = np.empty(k)
    ex = np.empty(k)
    for i in range(n):
        for j in range(kq):
            if not ok[i, j]:
                continue
            q = idx[i, j]
            by = cand[i, 0] - radius - 0.5 - pos[q, 0]  # lower edge of the first pixel
            bx = cand[i, 1] - radius - 0.5 - pos[q, 1]
            ly = math.erf(by * inv)
            lx = math.erf(bx * inv)
            for u in range(k):
                hy = math.erf((by + u + 1.0) * inv)
                hx = math.erf((bx + u + 1.0) * inv)
                ey[u] = 0.5 * (hy - ly)
                ex[u] = 0.5 * (hx - lx)
                ly = hy
                lx = hx
            a = amp[q]
            for u in range(k):
                ay = a * ey[u]
                for v in range(k):
                    extra[i, u, v] += ay * ex[v]


def neighbour_gauss(cand, pos, amp, idx, ok, radius, sigma):
    """(n, k, k): Σ over listed neighbours of their fitted Gaussians on each crop's grid."""
    n = len(pos)
    k = 2 * radius + 1
    extra = np.zeros((n, k, k))
    if n:
        _neighbour_gauss(np.ascontiguousarray(cand, dtype=np.float64),
                         np.ascontiguousarray(pos, dtype=np.float64),
                         np.ascontiguousarray(amp, dtype=np.float64),
                         np.ascontiguousarray(idx, dtype=np.int64),
                         np.ascontiguousarray(ok, dtype=np.bool_), int(radius), float(sigma),
                         extra)
    return extra
