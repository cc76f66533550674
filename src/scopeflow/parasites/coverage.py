"""Does the parasitemia interval cover the truth? Simulated FOVs through the real detection path,
then whole slides simulated at the count level.

Two levels (what is simulated, exactly):

1. **FOVs through the real path** (:func:`fov_calls`): :func:`scopeflow.simulate.smear.simulate_fov`
   (DPC left/right frames and true cell labels) +
   :func:`scopeflow.simulate.parasites.simulate_fluorescence`
   (rings, platelets, white-cell nuclei, debris, speckle) → Octopi DPC → fluorescence flatfield
   (of the FOV, as for a one-FOV sample) → spot detection →
   31×31 crops → the shipped classifier at its operating threshold → parasite calls in cells.
   The true labels stand in for the segmentation and every cell counts (no QC), so this level
   measures the fluorescence path alone. Per FOV it returns the calls in each ring's host cell
   (a call within 2 µm of a ring that lands on the neighbouring cell's label counts for the
   ring: on a slide it is counted all the same) and the false calls in cells without a ring.
2. **Slides at the count level** (:func:`simulate_slides`): a slide has ``n_rbc`` counted cells;
   its true parasite number is Poisson(λ·n_rbc / rbc_per_ul); each parasite gives a number of
   calls drawn from the pooled per-ring call counts of an *evaluation* set of FOVs; the false
   calls are the sum over the slide's FOVs of false calls drawn from the pooled per-FOV false
   calls of that set (FOVs drawn with replacement until ``n_rbc`` cells). The estimate and its
   interval use the sensitivity and false-call rate measured on a separate *calibration* set
   of FOVs (:func:`scopeflow.parasites.parasitemia.density_interval`).
3. **Many negative cells** (:func:`negative_cell_calls`): the false-positive budget is stated per
   5·10⁶ red cells, so it needs ~10⁵–10⁶ negative cells. A few simulated cell layouts (DPC
   and labels, the expensive part) each receive many independent 0/µL fluorescence frames
   (new confounders, placements and photon noise every time) that go through the real spot
   detection, and the candidates inside cells through the real classifier and OOD flag.

Parasite calls are counted as the stage counts them: calls inside cells that are not flagged
out of distribution (:mod:`scopeflow.parasites.ood`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scopeflow.parasites.parasitemia import density_interval

__all__ = ["calibrate", "fov_calls", "negative_cell_calls", "simulate_slides"]


def _flatfielded(frame: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """A simulated uint8 fluorescence frame as the stage sees it: float in [0, 1] divided by
    the flatfield of a one-FOV sample (:func:`scopeflow.parasites.stage.fluorescence_flatfield`
    with the stage's default opening)."""
    from scopeflow.parasites.stage import STAGE_DEFAULTS, fluorescence_flatfield

    f = np.asarray(frame, np.float32) / 255.0
    size = int(round(STAGE_DEFAULTS["background_um"] / pixel_size_um)) | 1
    return f / fluorescence_flatfield([f], size)


def fov_calls(seed: int, parasites_per_ul: float, *, size: int = 512, pixel_size_um: float = 0.333,
              model=None, reference: dict | None = None, spot_threshold: float = 0.02,
              threshold: float | None = None, downsample: int = 1) -> dict:
    """One simulated FOV through spot detection and the classifier.

    Parameters
    ----------
    seed : int
        FOV seed (cells and fluorescence).
    parasites_per_ul : float
        Simulated parasite density.
    size : int
        FOV edge (px).
    pixel_size_um : float
        Pixel size (µm).
    model : ParasiteEnsemble, optional
        Classifier (default: shipped).
    reference : dict, optional
        Its OOD reference (default: the shipped one); calls flagged ``ood`` are not counted.
    spot_threshold : float
        Spot detection threshold.
    threshold : float, optional
        Calibrated-probability threshold (default: the model's).
    downsample : int
        Spot detection on the d × d block mean (:func:`scopeflow.parasites.detect.detect_spots`).

    Returns
    -------
    dict
        ``ring_calls`` (per ring: calls in its host cell), ``fp_calls`` (calls in cells
        without a ring), ``n_cells``, ``n_candidates``, ``fp_kinds`` (truth kind of the
        object nearest each false call, ``"none"`` beyond 2 µm).
    """
    from scopeflow.parasites.classifier import load_parasite_model
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.parasites.detect import crop_spots, detect_spots
    from scopeflow.parasites.ood import load_ood_reference, score_spots
    from scopeflow.simulate.parasites import simulate_fluorescence
    from scopeflow.simulate.smear import simulate_fov

    if model is None:
        model, _ = load_parasite_model()
    if reference is None:
        reference = load_ood_reference()
    sim = simulate_fov((size, size), pixel_size_um=pixel_size_um, seed=int(seed))
    lab = sim["labels"]
    fl = simulate_fluorescence(lab, pixel_size_um, seed=int(seed) + 7919,
                               parasites_per_ul=parasites_per_ul)
    dpc = dpc_octopi(sim["left"], sim["right"])
    frame = _flatfielded(fl["fluorescence"], pixel_size_um)
    spots = detect_spots(frame, pixel_size_um, labels=lab, threshold=spot_threshold,
                         downsample=downsample)
    crops = crop_spots(frame, dpc, spots["y"].to_numpy(), spots["x"].to_numpy())
    sc = score_spots(crops, model=model, reference=reference)
    thr = float(model.threshold) if threshold is None else threshold
    call = (sc["p_parasite"] >= thr) & ~sc["ood"]
    calls = spots[call & (spots["cell_id"].to_numpy() > 0)]
    truth = fl["truth"]
    rings = truth[truth["kind"] == "ring"]
    ring_cells = set(rings["cell_id"])
    owner = calls["cell_id"].to_numpy().copy()
    if len(rings) and len(calls):  # a ring's call on the neighbouring cell's label is the ring's
        d = np.hypot(calls["y"].to_numpy()[:, None] - rings["y"].to_numpy()[None],
                     calls["x"].to_numpy()[:, None] - rings["x"].to_numpy()[None])
        j = d.argmin(axis=1)
        spill = ~np.isin(owner, list(ring_cells)) & (d[np.arange(len(owner)), j]
                                                     <= 2.0 / pixel_size_um)
        owner[spill] = rings["cell_id"].to_numpy()[j[spill]]
    per_cell = pd.Series(owner).value_counts()
    ring_calls = []
    for c, grp in rings.groupby("cell_id"):
        k = int(per_cell.get(c, 0))
        n = len(grp)  # rings sharing a cell share its calls
        ring_calls += [k // n + (1 if i < k % n else 0) for i in range(n)]
    fp = calls[~np.isin(owner, list(ring_cells))]
    kinds = []
    if len(fp) and len(truth):
        d = np.hypot(fp["y"].to_numpy()[:, None] - truth["y"].to_numpy()[None],
                     fp["x"].to_numpy()[:, None] - truth["x"].to_numpy()[None])
        near = d.argmin(axis=1)
        kinds = [truth["kind"].iloc[j] if d[i, j] <= 2.0 / pixel_size_um else "none"
                 for i, j in enumerate(near)]
    return {"ring_calls": np.asarray(ring_calls, np.int64), "fp_calls": int(len(fp)),
            "n_cells": int(fl["n_cells"]), "n_candidates": int(len(spots)), "fp_kinds": kinds}


def negative_cell_calls(
    n_layouts: int,
    frames_per_layout: int,
    *,
    size: int = 1024,
    pixel_size_um: float = 0.333,
    seed: int = 0,
    model=None,
    reference: dict | None = None,
    spot_threshold: float = 0.02,
    enrich: float = 1.0,
    threshold: float | None = None,
    progress=None,
) -> pd.DataFrame:
    """Parasite calls in simulated uninfected red cells (0 parasites/µL), per fluorescence frame.

    Parameters
    ----------
    n_layouts : int
        Independent cell layouts (:func:`scopeflow.simulate.smear.simulate_fov`, seeds
        ``seed + 10007·l``): DPC and true labels.
    frames_per_layout : int
        Independent 0/µL fluorescence frames per layout
        (:func:`scopeflow.simulate.parasites.simulate_fluorescence` with its default
        confounder densities; seeds from ``SeedSequence([seed, l, f])``).
    size : int
        FOV edge (px).
    pixel_size_um : float
        Pixel size (µm).
    seed : int
        Seed.
    model, reference : optional
        Classifier and OOD reference (default: shipped).
    spot_threshold : float
        Spot detection threshold (the stage default).
    enrich : float
        Every confounder (platelets, white-cell nuclei, debris, speckle) at this multiple of
        its default density: ``enrich`` × more negative objects per frame, for estimating the
        rare high-``p_parasite`` tail in less time (rates per red cell are then ``enrich``
        times those at the default densities, as long as objects rarely overlap).
    threshold : float, optional
        Calibrated-probability threshold of a call (default: the model's).
    progress : callable, optional
        Called with each finished row (dict).

    Returns
    -------
    pandas.DataFrame
        One row per frame: ``layout``, ``frame``, ``n_cells``, ``n_candidates``,
        ``n_in_cells`` (candidates inside a cell, the ones that could be counted), ``calls``
        (classifier calls inside cells), ``calls_ood`` (of those, flagged OOD),
        ``counted`` (calls inside cells not flagged OOD: what the stage counts),
        ``max_p`` (highest ``p_parasite`` inside cells), ``kinds`` (truth kind nearest each
        call inside a cell, ``;``-joined), ``p_counted`` (``p_parasite`` of every candidate
        inside a cell not flagged OOD with ``p_parasite`` ≥ 0.05, an array: the calls at any
        higher threshold).
    """
    from scopeflow.simulate.parasites import CONFOUNDER_DENSITIES
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.parasites.classifier import load_parasite_model
    from scopeflow.parasites.detect import crop_spots, detect_spots
    from scopeflow.parasites.ood import load_ood_reference, score_spots
    from scopeflow.simulate.parasites import simulate_fluorescence
    from scopeflow.simulate.smear import simulate_fov

    if model is None:
        model, _ = load_parasite_model()
    if reference is None:
        reference = load_ood_reference()
    rows = []
    for lay in range(int(n_layouts)):
        sim = simulate_fov((size, size), pixel_size_um=pixel_size_um, seed=int(seed) + 10007 * lay)
        lab = sim["labels"]
        dpc = dpc_octopi(sim["left"], sim["right"])
        for fr in range(int(frames_per_layout)):
            s = int(np.random.SeedSequence([int(seed), lay, fr]).generate_state(1)[0])
            dens = {k: float(enrich) * v for k, v in CONFOUNDER_DENSITIES.items()}
            fl = simulate_fluorescence(lab, pixel_size_um, seed=s, parasites_per_ul=0.0, **dens)
            frame = _flatfielded(fl["fluorescence"], pixel_size_um)
            sp = detect_spots(frame, pixel_size_um, labels=lab, threshold=spot_threshold)
            n_all = len(sp)
            sp = sp[sp["cell_id"] > 0]
            crops = crop_spots(frame, dpc, sp["y"].to_numpy(), sp["x"].to_numpy())
            sc = score_spots(crops, model=model, reference=reference)
            thr = float(model.threshold) if threshold is None else float(threshold)
            call = sc["p_parasite"] >= thr
            tail = (sc["p_parasite"] >= 0.05) & ~sc["ood"]
            kinds = []
            truth = fl["truth"]
            if call.any() and len(truth):
                cy, cx = sp["y"].to_numpy()[call], sp["x"].to_numpy()[call]
                d = np.hypot(cy[:, None] - truth["y"].to_numpy()[None],
                             cx[:, None] - truth["x"].to_numpy()[None])
                j = d.argmin(axis=1)
                kinds = [truth["kind"].iloc[q] if d[i, q] <= 2.0 / pixel_size_um else "none"
                         for i, q in enumerate(j)]
            row = {"layout": lay, "frame": fr, "n_cells": int(fl["n_cells"]),
                   "n_candidates": int(n_all), "n_in_cells": int(len(crops)),
                   "calls": int(call.sum()), "calls_ood": int((call & sc["ood"]).sum()),
                   "counted": int((call & ~sc["ood"]).sum()),
                   "max_p": float(sc["p_parasite"].max()) if len(crops) else 0.0,
                   "kinds": ";".join(kinds), "p_counted": sc["p_parasite"][tail]}
            rows.append(row)
            if progress is not None:
                progress(row)
    return pd.DataFrame(rows)


def calibrate(results: Sequence[dict]) -> dict:
    """Sensitivity (calls per true parasite) and false calls per 5·10⁶ cells of FOV results."""
    rc = np.concatenate([r["ring_calls"] for r in results]) if results else np.zeros(0)
    fp = sum(r["fp_calls"] for r in results)
    n = sum(r["n_cells"] for r in results)
    n_rings = int(rc.size)
    return {
        "n_rings": n_rings,
        "sensitivity": float(rc.sum() / n_rings) if n_rings else float("nan"),
        "fraction_detected": float(np.mean(rc > 0)) if n_rings else float("nan"),
        "fp_calls": int(fp),
        "n_cells": int(n),
        "fp_per_5e6_rbc": float(fp / n * 5e6) if n else float("nan"),
    }


def simulate_slides(
    densities: Sequence[float],
    eval_results: Sequence[dict],
    calib: dict,
    *,
    n_rbc: float = 1e6,
    repeats: int = 2000,
    rbc_per_ul: float = 5e6,
    confidence: float = 0.95,
    fp_budget_per_ul: float = 50.0,
    seed: int = 0,
    fold_sensitivity: bool = True,
    fold_fp: bool = False,
) -> pd.DataFrame:
    """Coverage of the density interval over simulated slides (see the module docstring).

    Parameters
    ----------
    densities : sequence of float
        True parasite densities (/µL).
    eval_results : sequence of dict
        :func:`fov_calls` results of the evaluation FOVs (their per-ring call counts and
        per-FOV false calls are resampled).
    calib : dict
        :func:`calibrate` of the calibration FOVs (``sensitivity``, ``fp_per_5e6_rbc``).
    n_rbc : float
        Counted red cells per slide.
    repeats : int
        Slides per density.
    rbc_per_ul, confidence, fp_budget_per_ul : float
        As in :func:`scopeflow.parasites.parasitemia.density_interval`; the budget decides
        ``parasites_detected`` (lower bound above it).
    seed : int
        Seed.
    fold_sensitivity, fold_fp : bool
        Fold the calibration's own uncertainty (its ``n_rings``, its ``n_cells``) into the
        interval; False treats that calibration value as exact.

    Returns
    -------
    pandas.DataFrame
        Per density: ``coverage`` (fraction of slides whose interval holds the truth),
        ``mean_estimate``, ``median_rel_width``, ``detected_fraction``, ``mean_raw_per_ul``
        (uncorrected calls per µL), ``raw_coverage`` (uncorrected interval) and
        ``within_budget`` (fraction of slides whose estimate is at most the budget).
    """
    rng = np.random.default_rng(seed)
    pool_rc = np.concatenate([r["ring_calls"] for r in eval_results])
    pool_fp = np.array([r["fp_calls"] for r in eval_results], np.int64)
    pool_n = np.array([r["n_cells"] for r in eval_results], np.float64)
    n_fov = int(np.ceil(n_rbc / pool_n.mean()))
    rows = []
    for lam in densities:
        k = np.empty(repeats, np.int64)
        n = np.empty(repeats)
        for r in range(repeats):
            f = rng.integers(0, pool_fp.size, n_fov)
            n[r] = pool_n[f].sum()
            true_n = rng.poisson(lam * n[r] / rbc_per_ul)
            k[r] = pool_fp[f].sum() + rng.choice(pool_rc, true_n).sum()
        est, lo, hi = density_interval(k, n, rbc_per_ul=rbc_per_ul,
                                       sensitivity=calib["sensitivity"],
                                       fp_per_5e6_rbc=calib["fp_per_5e6_rbc"],
                                       confidence=confidence,
                                       sensitivity_n=calib["n_rings"] if fold_sensitivity else 0,
                                       fp_n_rbc=calib["n_cells"] if fold_fp else 0)
        raw, rlo, rhi = density_interval(k, n, rbc_per_ul=rbc_per_ul, confidence=confidence)
        rows.append({
            "parasites_per_ul": float(lam),
            "n_rbc": float(n.mean()),
            "coverage": float(np.mean((lo <= lam) & (lam <= hi))),
            "mean_estimate": float(est.mean()),
            "median_rel_width": float(np.median((hi - lo) / lam)) if lam > 0 else float("nan"),
            "mean_upper": float(hi.mean()),
            "detected_fraction": float(np.mean(lo > fp_budget_per_ul)),
            "within_budget": float(np.mean(est <= fp_budget_per_ul)),
            "mean_raw_per_ul": float(raw.mean()),
            "raw_coverage": float(np.mean((rlo <= lam) & (lam <= rhi))),
        })
    return pd.DataFrame(rows)
