"""Compiled (numba) kernels of the U-Net predictor: probability maps to instances.

:func:`decode_masks` gives exactly what the scipy code of
:func:`scopeflow.segment.decode.decode_maps` gives (kept there as the reference and the
fallback without numba; the tests compare the two), about 5x faster and without holding
the GIL, so the chunks of a field of view decode in parallel threads:

* :func:`label4` numbers the 4-connected components of a mask in the raster order of
  their first pixel, as :func:`scipy.ndimage.label` does;
* seeds smaller than ``min_seed_area`` are dropped (ids are kept, with gaps);
* seeds grow ``grow`` synchronous 4-connected steps into the foreground, a pixel reached
  by several labels in one step taking the largest id;
* foreground components left without a seed and at least ``orphan_area`` pixels large
  become instances (id = their component id + the largest grown id);
* instances smaller than ``min_area`` or with a bounding box larger than ``max_extent``
  on either side are dropped.

Arrays are (y, x); masks are boolean, labels int32.
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit

__all__ = ["HAVE_NUMBA", "decode_masks", "erode4", "label4", "warm_up"]


@njit(cache=True, nogil=True)
def _find(parent, i):  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True, nogil=True)
def _label4(mask, exclude):  # pragma: no cover - compiled
    """4-connected components of ``mask & (exclude == 0)``: ``(int32 labels, count, areas)``.

    ``exclude``: an int32 array like ``mask``, or an empty one for none. Ids follow the
    raster order of each component's first pixel (as ``ndi.label``); ``areas[i]`` is the
    pixel count of component ``i`` (``areas[0]`` unused).
    """
    h, w = mask.shape
    use_exclude = exclude.size > 0
    lab = np.zeros((h, w), np.int32)
    parent = np.empty(h * w // 2 + 2, np.int32)  # provisional ids: at most a checkerboard's
    n = 0
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or (use_exclude and exclude[y, x] != 0):
                continue
            up = lab[y - 1, x] if y > 0 else 0
            left = lab[y, x - 1] if x > 0 else 0
            if up == 0 and left == 0:
                n += 1
                parent[n] = n
                lab[y, x] = n
            elif up == 0:
                lab[y, x] = left
            elif left == 0 or up == left:
                lab[y, x] = up
            else:
                a = _find(parent, up)
                b = _find(parent, left)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                lab[y, x] = up
    # parent[i] <= i, and a component's root is its smallest provisional id: the one its
    # first pixel in raster order made. Numbering roots by id is numbering components in
    # that order, and one pass in id order resolves every provisional id.
    final = np.zeros(n + 1, np.int32)
    count = 0
    for i in range(1, n + 1):
        if parent[i] == i:
            count += 1
            final[i] = count
        else:
            final[i] = final[parent[i]]
    area = np.zeros(count + 1, np.int64)
    for y in range(h):
        for x in range(w):
            v = lab[y, x]
            if v:
                f = final[v]
                lab[y, x] = f
                area[f] += 1
    return lab, count, area


@njit(cache=True, nogil=True)
def label4(mask):  # pragma: no cover - compiled
    """4-connected components of a boolean (y, x) mask: ``(int32 labels, count)``, as ``ndi.label``."""
    lab, count, _ = _label4(mask, np.zeros((0, 0), np.int32))
    return lab, count


@njit(cache=True, nogil=True)
def erode4(mask, iterations):  # pragma: no cover - compiled
    """Binary erosion with the 4-connected cross, outside the array counting as False.

    Equal to ``ndi.binary_erosion(mask, cross, iterations=iterations)``.
    """
    h, w = mask.shape
    cur = mask.copy()
    nxt = np.empty_like(cur)
    for _ in range(iterations):
        for y in range(h):
            for x in range(w):
                nxt[y, x] = (
                    cur[y, x]
                    and y > 0 and cur[y - 1, x]
                    and y < h - 1 and cur[y + 1, x]
                    and x > 0 and cur[y, x - 1]
                    and x < w - 1 and cur[y, x + 1]
                )
        cur, nxt = nxt, cur
    return cur


@njit(cache=True, nogil=True)
def _grow(lab, allowed, steps):  # pragma: no cover - compiled
    """Grow ``lab`` in place by ``steps`` synchronous steps (see the module docstring).

    Each step is one raster pass; the row above and the current row are read from copies
    made before the pass changed them, the row below is not changed yet. Stops early
    when a step changes nothing.
    """
    h, w = lab.shape
    above = np.zeros(w, np.int32)
    here = np.empty(w, np.int32)
    for _ in range(steps):
        changed = False
        above[:] = 0
        for y in range(h):
            here[:] = lab[y]
            for x in range(w):
                if here[x] == 0 and allowed[y, x]:
                    m = above[x]
                    if y < h - 1:
                        m = max(m, lab[y + 1, x])
                    if x > 0:
                        m = max(m, here[x - 1])
                    if x < w - 1:
                        m = max(m, here[x + 1])
                    if m:
                        lab[y, x] = m
                        changed = True
            above, here = here, above
        if not changed:
            break


@njit(cache=True, nogil=True)
def decode_masks(fg, body, min_seed_area, grow, orphan_area, min_area, max_extent):  # pragma: no cover
    """Instances from a foreground mask and a seed-body mask: ``(labels, seeds)`` int32.

    ``max_extent`` < 0 disables the bounding-box filter; the other rules are in the
    module docstring.
    """
    h, w = fg.shape
    seeds, n, area = _label4(body, np.zeros((0, 0), np.int32))
    labels = np.empty_like(seeds)
    top = 0  # the largest kept seed id: growing spreads ids, it makes none
    for y in range(h):
        for x in range(w):
            v = seeds[y, x]
            if v and area[v] < min_seed_area:
                v = 0
                seeds[y, x] = 0
            labels[y, x] = v
            top = max(top, v)
    _grow(labels, fg, grow)
    m = 0
    if orphan_area > 0:
        rest, m, rest_area = _label4(fg, labels)  # foreground no seed reached
    else:
        rest, rest_area = np.zeros((0, 0), np.int32), np.zeros(1, np.int64)
    filter_ = min_area > 0 or max_extent >= 0
    size = top + m + 1
    count = np.zeros(size, np.int64)
    y0 = np.full(size, h, np.int64)
    y1 = np.full(size, -1, np.int64)
    x0 = np.full(size, w, np.int64)
    x1 = np.full(size, -1, np.int64)
    for y in range(h):
        for x in range(w):
            v = labels[y, x]
            if v == 0 and m:
                r = rest[y, x]
                if r and rest_area[r] >= orphan_area:  # an orphan becomes its own instance
                    v = r + top
                    labels[y, x] = v
                    seeds[y, x] = v
            if v and filter_:
                count[v] += 1
                y0[v] = min(y0[v], y)
                y1[v] = max(y1[v], y)
                x0[v] = min(x0[v], x)
                x1[v] = max(x1[v], x)
    drop = np.zeros(size, np.bool_)
    if filter_:
        for v in range(1, size):
            if count[v] == 0:
                continue
            if min_area > 0 and count[v] < min_area:
                drop[v] = True
            if max_extent >= 0 and (y1[v] - y0[v] + 1 > max_extent or x1[v] - x0[v] + 1 > max_extent):
                drop[v] = True
    for y in range(h):
        for x in range(w):
            if drop[labels[y, x]]:
                labels[y, x] = 0
            if labels[y, x] != seeds[y, x]:  # dropped seeds, and seeds of dropped instances
                seeds[y, x] = 0
    return labels, seeds


def warm_up() -> None:
    """Load (or compile, the first time) the kernels, so the first decode does not wait for them."""
    if HAVE_NUMBA:
        tiny = np.zeros((2, 2), np.bool_)
        decode_masks(tiny, tiny, 1, 1, 1, 0, -1)
