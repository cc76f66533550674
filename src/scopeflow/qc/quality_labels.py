"""Labelled training crops of the per-cell quality classifier (:mod:`.cell_classifier`).

Labels are derived, never hand-set:

* **Real images** (Octopi DPC + reference RBC masks). The shipped U-Net segments the image
  (:func:`scopeflow.segment.chunked.segment_image`); every predicted cell is compared with the
  reference instances (:func:`scopeflow.evaluate.overlap_table`). IoU ≥ 0.8 with a reference
  cell → *good*; otherwise *bad*, with the failure named: ``merged`` (covers ≥ 2 reference
  cells by ≥ 50 % each), ``split`` (less than 80 % of its reference cell, which another
  prediction shares), ``unmatched`` (no reference cell, IoU < 0.1) or ``poor`` (the rest).
* **Corrupted contours of real cells** (honest "failed contour" examples, because the U-Net
  rarely fails on these images): a good predicted cell's label is merged with a touching
  neighbour, eroded or dilated by 4–7 px, cut in half, or shifted by 5–8 px. A corruption is
  kept only if its IoU with the original cell is ≤ 0.7.
* **Simulated smears** (:func:`scopeflow.simulate.smear.simulate_fov`, more overlapping cells
  than default). The U-Net segments the simulated DPC and its cells are matched with the
  truth labels. Images at |Δz| ≥ 6 µm defocus → every cell *bad* (``defocus``); in-focus
  images (|Δz| ≤ 2 µm): cells whose true ellipse overlaps another cell's by ≥ 5 % → *bad*
  (``overlap``), mismatched → bad as above, the rest *good*.

The training itself: :mod:`scopeflow.qc.train_quality` (``scopeflow train-quality``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from scopeflow.evaluate import overlap_table
from scopeflow.models.training import SHARED_DATA
from scopeflow.qc.cell_classifier import CROP_PX, cell_crops

__all__ = [
    "CORRUPTIONS",
    "GOOD_IOU",
    "build_examples",
    "classify_predictions",
    "corrupt_cell",
    "real_examples",
    "sim_examples",
    "sim_overlap_labels",
    "simulated_dpc",
]

#: IoU with a reference cell from which a predicted cell counts as a good contour.
GOOD_IOU = 0.8
#: Synthetic contour failures applied to real good cells.
CORRUPTIONS = ("merge", "erode", "dilate", "half", "shift")
_MAX_CORRUPT_IOU = 0.7
_WIN = 112  # local window (px) in which a corruption is made (crop 48 + shifts + merges)
_DISK = {r: (np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r) for r in range(1, 9)}

#: Default split: images the classifier is trained on / never sees.
TRAIN_REAL = ["octopi_rbc_dpc_m2unet/images/dpc_2048_00.png", "octopi_rbc_dpc_harness/images"]
HELDOUT_REAL = [
    "octopi_rbc_dpc_m2unet/images/dpc_1024_00.png",
    "octopi_rbc_dpc_m2unet/images/dpc_2048_01.png",
]
MASK_DIRS = ["octopi_rbc_dpc_m2unet/masks", "octopi_rbc_dpc_harness/masks"]


# ------------------------------------------------------------------------ labels
def classify_predictions(pred: np.ndarray, ref: np.ndarray, good_iou: float = GOOD_IOU) -> dict:
    """Label every predicted cell by how it matches the reference instances.

    Parameters
    ----------
    pred, ref : numpy.ndarray
        Integer instance labels (y, x) of the prediction and the reference.
    good_iou : float
        IoU from which a predicted cell is good.

    Returns
    -------
    dict
        ``ids`` (int64, predicted ids ascending), ``good`` (bool), ``kind`` (str: ``good``,
        ``merged``, ``split``, ``unmatched``, ``poor``), ``best_iou`` (float64) and
        ``ref_id`` (the reference cell of largest IoU, 0 if none).
    """
    t = overlap_table(pred, ref)
    ids = t["pred_ids"]
    n = ids.size
    best_iou = np.zeros(n)
    best_ref = np.zeros(n, np.int64)
    pi = np.searchsorted(ids, t["pair_pred"])
    order = np.lexsort((-t["iou"], pi))  # by pred, best IoU first
    first = np.ones(order.size, bool)
    first[1:] = pi[order][1:] != pi[order][:-1]
    sel = order[first]
    best_iou[pi[sel]] = t["iou"][sel]
    best_ref[pi[sel]] = t["pair_ref"][sel]
    ref_area = dict(zip(t["ref_ids"].tolist(), t["ref_area"].tolist(), strict=True))
    pred_area = t["pred_area"]
    # merged: >= 2 reference cells each covered >= 50 % by this prediction
    rarea = np.array([ref_area[r] for r in t["pair_ref"].tolist()], np.float64)
    big = t["intersection"] >= 0.5 * rarea
    n_cover = np.bincount(pi[big], minlength=n)
    # split: reference cells shared by >= 2 predictions (each >= 20 % of the reference)
    shared = t["intersection"] >= 0.2 * rarea
    refs, cnt = np.unique(t["pair_ref"][shared], return_counts=True)
    multi = set(refs[cnt >= 2].tolist())
    kind = np.full(n, "poor", dtype=object)
    good = best_iou >= good_iou
    kind[good] = "good"
    for k in np.flatnonzero(~good):
        if n_cover[k] >= 2:
            kind[k] = "merged"
        elif best_iou[k] < 0.1:
            kind[k] = "unmatched"
        elif best_ref[k] in multi and pred_area[k] < 0.8 * ref_area[int(best_ref[k])]:
            kind[k] = "split"
    return {"ids": ids, "good": good, "kind": kind.astype(str), "best_iou": best_iou,
            "ref_id": best_ref}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 0.0


def corrupt_cell(
    labels: np.ndarray, cid: int, kind: str, rng: np.random.Generator
) -> np.ndarray | None:
    """A copy of ``labels`` in which cell ``cid`` has a deliberately wrong contour.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels (a local window around the cell is enough).
    cid : int
        Cell to corrupt.
    kind : {"merge", "erode", "dilate", "half", "shift"}
        ``merge``: a touching neighbour (≤ 3 px away) gets the label ``cid``; ``erode`` /
        ``dilate``: by a disk of radius 4–7 px (dilation overwrites neighbours); ``half``: only
        the pixels on one side of a random line within 0.2 radii of the centroid stay;
        ``shift``: the mask moves by 5–8 px in a random direction.
    rng : numpy.random.Generator
        Randomness.

    Returns
    -------
    numpy.ndarray or None
        New labels, or None when the corruption is impossible (no neighbour, cell vanishes)
        or not bad enough (IoU with the original cell > 0.7).
    """
    lab = labels.copy()
    cell = labels == cid
    if not cell.any():
        return None
    if kind == "merge":
        ring = ndi.binary_dilation(cell, _DISK[3]) & ~cell
        nb = np.unique(labels[ring])
        nb = nb[(nb > 0) & (nb != cid)]
        if nb.size == 0:
            return None
        lab[labels == rng.choice(nb)] = cid
    elif kind == "erode":
        new = ndi.binary_erosion(cell, _DISK[int(rng.integers(4, 8))])
        lab[cell & ~new] = 0
    elif kind == "dilate":
        new = ndi.binary_dilation(cell, _DISK[int(rng.integers(4, 8))])
        lab[new] = cid
    elif kind == "half":
        yy, xx = np.nonzero(cell)
        cy, cx = yy.mean(), xx.mean()
        r = np.sqrt(yy.size / np.pi)
        th = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(-0.2, 0.2) * r
        side = (yy - cy) * np.sin(th) + (xx - cx) * np.cos(th) > off
        lab[yy[side], xx[side]] = 0
    elif kind == "shift":
        ang = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(5, 8)
        dy, dx = int(round(d * np.sin(ang))), int(round(d * np.cos(ang)))
        moved = np.roll(cell, (dy, dx), axis=(0, 1))
        lab[cell] = 0
        lab[moved] = cid
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose from {CORRUPTIONS}")
    new_cell = lab == cid
    if not new_cell.any() or _iou(new_cell, cell) > _MAX_CORRUPT_IOU:
        return None
    return lab


def _window(a: np.ndarray, cy: int, cx: int, size: int, fill) -> np.ndarray:
    """``size``² window of ``a`` centred on (cy, cx), outside filled with ``fill``."""
    out = np.full((size, size), fill, dtype=a.dtype)
    y0, x0 = cy - size // 2, cx - size // 2
    ys, ye = max(y0, 0), min(y0 + size, a.shape[0])
    xs, xe = max(x0, 0), min(x0 + size, a.shape[1])
    out[ys - y0 : ye - y0, xs - x0 : xe - x0] = a[ys:ye, xs:xe]
    return out


def _corrupted_crops(dpc, labels, good_ids, n, rng, crop):
    """``n`` crops of corrupted contours of randomly chosen good cells (kinds cycle)."""
    if n <= 0 or len(good_ids) == 0:
        return np.zeros((0, 2, crop, crop), np.float32), []
    from scopeflow.qc.cell_classifier import cell_centroids

    cand = rng.permutation(np.asarray(good_ids))
    cent = cell_centroids(labels, cand)
    img = np.asarray(dpc, np.float32)
    out, kinds = [], []
    j = 0
    for cid, (cy, cx) in zip(cand.tolist(), cent.tolist(), strict=True):
        if len(out) >= n:
            break
        kind = CORRUPTIONS[j % len(CORRUPTIONS)]
        iy, ix = int(round(cy)), int(round(cx))
        lw = _window(labels, iy, ix, _WIN, 0)
        new = corrupt_cell(lw, cid, kind, rng)
        if new is None:
            continue
        dw = _window(img, iy, ix, _WIN, np.float32(np.nan))
        c, found = cell_crops(dw, new, np.array([cid]), size=crop)
        if found[0]:
            out.append(c[0])
            kinds.append(kind)
            j += 1
    return np.asarray(out, np.float32).reshape(-1, 2, crop, crop), kinds


def _segment(dpc: np.ndarray, predictor) -> np.ndarray:
    from scopeflow.segment.chunked import segment_image

    return np.asarray(segment_image(dpc, predictor, chunk=1024, num_workers=1)).astype(np.int64)


def real_examples(
    image_path: str | Path,
    mask_path: str | Path,
    predictor,
    rng: np.random.Generator,
    corrupt_fraction: float = 0.4,
    crop: int = CROP_PX,
) -> dict:
    """Labelled crops from one real image: U-Net cells vs reference, plus corruptions.

    Parameters
    ----------
    image_path, mask_path : str or Path
        DPC image and its reference mask (binary → 4-connected instances).
    predictor : scopeflow.segment.unet.UNetPredictor
        Segmenter (the shipped U-Net).
    rng : numpy.random.Generator
        Randomness of the corruptions.
    corrupt_fraction : float
        Number of corrupted crops as a fraction of the good cells.
    crop : int
        Crop edge (px).

    Returns
    -------
    dict
        ``x`` float16 (N, 2, crop, crop), ``y`` uint8 (1 = good), ``kind`` (str per crop:
        ``good``/``merged``/``split``/``unmatched``/``poor`` for real predicted cells, or
        ``corrupt:<kind>``), ``source`` (the image stem).
    """
    from scopeflow.segment.train_data import read_image, read_instances

    dpc = read_image(image_path)
    ref = read_instances(mask_path).astype(np.int64)
    pred = _segment(dpc, predictor)
    cls = classify_predictions(pred, ref)
    x, found = cell_crops(dpc, pred, cls["ids"], size=crop)
    assert found.all()
    n_cor = int(round(corrupt_fraction * cls["good"].sum()))
    xc, kc = _corrupted_crops(dpc, pred, cls["ids"][cls["good"]], n_cor, rng, crop)
    kinds = list(cls["kind"]) + [f"corrupt:{k}" for k in kc]
    y = np.concatenate([cls["good"].astype(np.uint8), np.zeros(len(kc), np.uint8)])
    stem = Path(image_path).stem
    return {"x": np.concatenate([x, xc]).astype(np.float16), "y": y, "kind": np.array(kinds),
            "source": np.array([stem] * len(y))}


def sim_overlap_labels(cells: list[dict], shape: tuple[int, int], min_frac: float = 0.05) -> set:
    """Truth labels of simulated cells whose full ellipse overlaps another cell's.

    Parameters
    ----------
    cells : list of dict
        ``cells`` of :func:`scopeflow.simulate.smear.simulate_fov` (centre, semi-axes, angle).
    shape : (int, int)
        Image shape.
    min_frac : float
        A cell overlaps when at least this fraction of its ellipse is covered by others.

    Returns
    -------
    set of int
        Labels of overlapping cells (the top and the hidden one both count).
    """
    ny, nx = shape
    count = np.zeros(shape, np.int16)
    masks = []
    for c in cells:
        a, b = c["semi_axes_px"]
        y0, y1 = max(int(np.floor(c["y_px"] - a)) - 1, 0), min(int(np.ceil(c["y_px"] + a)) + 2, ny)
        x0, x1 = max(int(np.floor(c["x_px"] - a)) - 1, 0), min(int(np.ceil(c["x_px"] + a)) + 2, nx)
        yy = np.arange(y0, y1)[:, None] - c["y_px"]
        xx = np.arange(x0, x1)[None, :] - c["x_px"]
        co, si = np.cos(c["angle_rad"]), np.sin(c["angle_rad"])
        inside = ((co * xx + si * yy) / a) ** 2 + ((-si * xx + co * yy) / b) ** 2 < 1.0
        count[y0:y1, x0:x1] += inside
        masks.append((y0, y1, x0, x1, inside))
    out = set()
    for c, (y0, y1, x0, x1, inside) in zip(cells, masks, strict=True):
        n_in = inside.sum()
        if n_in and (count[y0:y1, x0:x1][inside] >= 2).sum() >= min_frac * n_in:
            out.add(int(c["label"]))
    return out


def simulated_dpc(sim: dict) -> np.ndarray:
    """Flatfield-corrected DPC of a :func:`simulate_fov` result (float32 in [0, 1])."""
    from scopeflow.dpc import dpc_octopi

    return dpc_octopi(sim["left"], sim["right"], sim["ff_left"], sim["ff_right"])


def sim_examples(
    seed: int, defocus_um: float, predictor, shape=(384, 384), crop: int = CROP_PX
) -> dict:
    """Labelled crops from one simulated smear (see the module docstring for the labels).

    Parameters
    ----------
    seed : int
        Simulation seed (also draws the density, 0.3–0.5).
    defocus_um : float
        Defocus Δz (µm); |Δz| ≥ 6 → all cells bad (``defocus``); |Δz| ≤ 2 → labels from
        matching and overlaps. Values in between are refused (ambiguous).
    predictor : scopeflow.segment.unet.UNetPredictor
        Segmenter.
    shape : (int, int)
        Image shape (px).
    crop : int
        Crop edge (px).

    Returns
    -------
    dict
        As :func:`real_examples`; ``source`` is ``sim<seed>_dz<Δz>``.
    """
    from scopeflow.simulate.smear import simulate_fov

    dz = abs(float(defocus_um))
    if 2.0 < dz < 6.0:
        raise ValueError(
            f"|defocus| {dz} µm is between the in-focus (≤ 2) and defocused (≥ 6) ranges"
        )
    density = float(np.random.default_rng([seed, 7]).uniform(0.3, 0.5))
    sim = simulate_fov(shape=shape, seed=seed, defocus_um=float(defocus_um), density=density,
                       overlap_fraction=0.25)
    dpc = simulated_dpc(sim)
    pred = _segment(dpc, predictor)
    truth = sim["labels"].astype(np.int64)
    cls = classify_predictions(pred, truth)
    kind = cls["kind"].astype(object)
    good = cls["good"].copy()
    if dz >= 6.0:
        good[:] = False
        kind[:] = "defocus"
    else:
        over = sim_overlap_labels(sim["cells"], shape)
        ov = np.array([int(r) in over for r in cls["ref_id"].tolist()], bool)
        kind[ov] = "overlap"
        good &= ~ov
    x, _ = cell_crops(dpc, pred, cls["ids"], size=crop)
    src = f"sim{seed}_dz{defocus_um:+g}"
    return {"x": x.astype(np.float16), "y": good.astype(np.uint8), "kind": kind.astype(str),
            "source": np.array([src] * len(good))}


def _cat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y", "kind", "source")}


def _sim_plan(role: str) -> list[tuple[int, float]]:
    """(seed, Δz) of the simulated images: disjoint seeds for train and held-back."""
    if role == "train":
        seeds = range(1000, 1032)
    elif role == "heldout":
        seeds = range(5000, 5012)
    else:
        raise ValueError(role)
    plan = []
    for i, s in enumerate(seeds):
        r = np.random.default_rng([s, 3])
        dz = r.uniform(-2, 2) if i % 2 == 0 else r.choice([-1, 1]) * r.uniform(6, 30)
        plan.append((s, round(float(dz), 2)))
    return plan


def build_examples(role: str, predictor=None, data: Path = SHARED_DATA, seed: int = 0,
                   verbose: bool = True) -> dict:
    """All labelled crops of the train or held-back split.

    Parameters
    ----------
    role : {"train", "heldout"}
        ``train``: dpc_2048_00 + the 10 harness crops + 32 simulated 384² smears (seeds
        1000–1031); ``heldout``: dpc_1024_00 + dpc_2048_01 + 12 simulated smears (seeds
        5000–5011). Half of the simulated images are in focus (|Δz| ≤ 2 µm), half
        defocused by 6–30 µm.
    predictor : UNetPredictor, optional
        Segmenter (default: the shipped U-Net on CPU, 1 thread).
    data : Path
        Root of the shared data.
    seed : int
        Seed of the corruptions (the held-back split adds 1000).

    Returns
    -------
    dict
        ``x``, ``y``, ``kind``, ``source`` (see :func:`real_examples`).
    """
    from scopeflow.segment.train_data import pair_images_masks
    from scopeflow.segment.unet import UNetPredictor

    if predictor is None:
        predictor = UNetPredictor(device="cpu", threads=1)
    imgs = TRAIN_REAL if role == "train" else HELDOUT_REAL
    pairs = pair_images_masks([data / p for p in imgs], [data / m for m in MASK_DIRS])
    rng = np.random.default_rng(seed + (1000 if role == "heldout" else 0))
    parts = []
    t0 = time.perf_counter()
    for im, mk in pairs:
        parts.append(real_examples(im, mk, predictor, rng))
        if verbose:
            p = parts[-1]
            print(f"  {im.name}: {int(p['y'].sum())} good / {int((p['y'] == 0).sum())} bad "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    for s, dz in _sim_plan(role):
        parts.append(sim_examples(s, dz, predictor))
    if verbose:
        print(f"  simulated: {len(_sim_plan(role))} images ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return _cat(parts)
