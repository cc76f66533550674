"""One frame's beads: candidate detection, cross-correlation, MLE fit, quality filter.

All spots of a frame are processed together, vectorised:

1. **Candidates** (:class:`_Detector`) – local maxima of a network probability map or of
   the matched filter (:mod:`scopeflow.track.peaks`).
2. **Cross-correlation** – subpixel start positions (:mod:`scopeflow.track.refine`).
3. **Refinement** – Poisson MLE fit started there (:mod:`scopeflow.track.fit`); a second
   pass refits crowded beads with their neighbours' fitted models added.
4. **Selection** – fits whose amplitude is below ``min_snr`` standard errors are dropped
   and candidates converging on one bead (closer than ``max(1, σ)`` px) are merged.
   ``ep_px`` = ``sqrt(mean(diag(I⁻¹)_y, diag(I⁻¹)_x) · χ²_red)``, the Cramér–Rao bound
   from the Fisher information at the fitted parameters, scaled by the reduced chi-square
   (absorbs an unknown camera gain).

:func:`estimate_sigma` is the pilot fit with free σ that gives the Gaussian bead size.

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0).
Intensities are ``(ADU - offset) / gain`` (photons when gain and offset are right).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.spatial import cKDTree

from scopeflow.track.fit import _neighbour_mask, _neighbour_models, fit_gaussian, fit_template
from scopeflow.track.params import LocateParams
from scopeflow.track.peaks import _gaussian_response, extract_crops, find_peaks, matched_filter
from scopeflow.track.refine import refine_xcorr
from scopeflow.track.templates import gaussian_template

__all__ = ["estimate_sigma"]


def _radius_for(sigma: float, profile: str) -> int:
    if profile == "gaussian":
        return int(max(4, math.ceil(3.5 * sigma)))
    # rings/templates: ring radius 2.2σ + 3 widths 0.6σ ≈ 4σ
    return int(max(5, math.ceil(4.5 * sigma)))


class _Detector:
    """Candidate detection (network map or matched filter) for one configuration."""

    def __init__(self, model, p: LocateParams, sigma: float, template: np.ndarray | None):
        self.model = model
        self.p = p
        self.sigma = sigma
        self.template = template
        self.min_distance = p.min_distance or max(2, int(round(1.5 * sigma)))

    def score(self, img: np.ndarray, polarity: float) -> np.ndarray:
        if self.model is not None:
            return np.asarray(self.model(img), dtype=np.float32)
        if self.template is None:
            r = _gaussian_response(img, self.sigma)
        else:
            r = matched_filter(img, self.template)
        return r * np.float32(polarity)

    def detect(self, img: np.ndarray, polarity: float) -> tuple[np.ndarray, np.ndarray]:
        s = self.score(img, polarity)
        thr = self.p.prob_threshold if self.model is not None else self.p.snr_threshold
        yx = find_peaks(s, thr, self.min_distance)
        return yx, s[yx[:, 0], yx[:, 1]] if len(yx) else np.zeros(0, np.float32)


def _auto_polarity(img: np.ndarray, sigma: float) -> float:
    """+1 if beads are brighter than the background, -1 if darker (matched-filter tails)."""
    r = _gaussian_response(img, sigma)
    hi = np.percentile(r, 99.9)
    lo = -np.percentile(r, 0.1)
    return 1.0 if hi >= lo else -1.0


def _to_photons(frame: np.ndarray, p: LocateParams) -> np.ndarray:
    f = np.asarray(frame, dtype=np.float64)
    if p.offset or p.gain != 1.0:
        f = (f - p.offset) / p.gain
    return f


def _fit(crops, w, oy, ox, p, mode, sigma, template, n_iter, extra=None, fit_sigma=False):
    if mode == "gaussian":
        return fit_gaussian(crops, w, oy, ox, sigma, fit_sigma=fit_sigma,
                            read_noise=p.read_noise, n_iter=n_iter, extra=extra)
    return fit_template(crops, w, oy, ox, template, read_noise=p.read_noise, n_iter=n_iter,
                        extra=extra)


def _select(res, cand, pol, scores, p, shape, sigma, dedup_px=None):
    """Quality filter + de-duplication; returns the kept indices and the output columns.

    Fits closer than ``dedup_px`` (default ``max(1, σ)``) converged on one bead: the one
    with the larger SNR is kept.
    """
    var = 0.5 * (res["var_y"] + res["var_x"])
    var_n = res["var_photons"]
    if p.ep_scale == "chi2":
        var = var * np.maximum(res["chi2"], 1e-6)
        var_n = var_n * np.maximum(res["chi2"], 1e-6)
    snr = np.abs(res["photons"]) / np.sqrt(np.maximum(var_n, 1e-300))
    y = cand[:, 0] + res["dy"]
    x = cand[:, 1] + res["dx"]
    ny, nx = shape
    keep = res["ok"] & (y >= -0.5) & (y < ny - 0.5) & (x >= -0.5) & (x < nx - 0.5)
    keep &= np.isfinite(var) & (np.sign(res["photons"]) == pol) & (snr >= p.min_snr)
    idx = np.flatnonzero(keep)
    # candidates converging on the same bead (closer than max(1, σ) px: unresolvable):
    # keep the better-determined one
    if len(idx) > 1:
        pts = np.stack([y[idx], x[idx]], 1)
        rad = float(dedup_px) if dedup_px else max(1.0, float(sigma) if sigma else 1.0)
        pairs = cKDTree(pts).query_pairs(rad, output_type="ndarray")
        if len(pairs):
            drop = np.zeros(len(idx), bool)
            for i, j in pairs:
                if drop[i] or drop[j]:
                    continue
                drop[j if snr[idx[i]] >= snr[idx[j]] else i] = True
            idx = idx[~drop]
    out = {
        "y": y, "x": x, "photons": np.abs(res["photons"]), "background": res["background"],
        "ep_px": np.sqrt(np.maximum(var, 0)), "sigma_px": res["sigma"], "score": scores,
        "snr": snr, "chi2": res["chi2"],
    }
    return idx, {k_: np.asarray(v, dtype=np.float64)[idx] for k_, v in out.items()}


def _localize_frame(
    img: np.ndarray,
    cand: np.ndarray,
    scores: np.ndarray,
    p: LocateParams,
    radius: int,
    sigma: float | None,
    template: np.ndarray,
    mode: str,
    dedup_px: float | None = None,
) -> dict[str, np.ndarray]:
    """xcorr + fit for all candidates of one frame; returns arrays (frame coordinates).

    ``dedup_px``: fits closer than this merge (default ``max(1, σ)``; the bead radius).

    Pass 1 fits each bead with pixels nearer another candidate masked out; after quality
    filtering and de-duplication, pass 2 (``p.neighbours``) refits every bead with the
    fitted models of its neighbours added to its expected photons (all pixels used).
    """
    n = len(cand)
    if n == 0:
        return {k: np.zeros(0) for k in ("y", "x", "photons", "background", "ep_px", "sigma_px",
                                         "score", "snr", "chi2")}
    crops, valid = extract_crops(img, cand, radius)
    oy, ox, pol = refine_xcorr(crops, valid, template, p.upsample)
    pos0 = cand + np.stack([oy, ox], 1)
    w = valid & _neighbour_mask(cand, pos0, radius, pos0)
    if p.refine == "xcorr":
        # amplitude/background by weighted linear least squares at the xcorr position
        res = _fit(crops, w, oy, ox, p, mode, sigma, template, 0)
        res["dy"], res["dx"] = oy, ox
        return _select(res, cand, pol, scores, p, img.shape, sigma, dedup_px)[1]
    res = _fit(crops, w, oy, ox, p, mode, sigma, template, p.n_iter)
    idx, out = _select(res, cand, pol, scores, p, img.shape, sigma, dedup_px)
    if not p.neighbours or len(idx) < 2:
        return out
    pos = np.stack([out["y"], out["x"]], 1)
    amp = res["photons"][idx]
    c2 = cand[idx]
    extra = _neighbour_models(c2, pos, amp, radius, mode, sigma, template)
    crowded = np.abs(extra).sum(axis=(1, 2)) > 1e-3 * np.abs(amp)
    if not crowded.any():
        return out
    sel = np.flatnonzero(crowded)
    res2 = _fit(crops[idx[sel]], valid[idx[sel]], res["dy"][idx[sel]], res["dx"][idx[sel]], p,
                mode, sigma, template, 3, extra=extra[sel])
    idx2, out2 = _select(res2, c2[sel], pol[idx[sel]], out["score"][sel], p, img.shape, None)
    # crowded beads take the refit values where the refit passed the filters
    rows = sel[idx2]
    for key in out:
        out[key][rows] = out2[key]
    return out


def estimate_sigma(
    frames: Iterable[np.ndarray],
    detector: _Detector,
    p: LocateParams,
    polarity: float,
    sigma0: float,
) -> float:
    """Median σ (px) of free-σ Gaussian fits of the strongest detected beads.

    Parameters
    ----------
    frames : iterable of ndarray (y, x)
        Pilot frames (photons).
    detector : _Detector
        Candidate detector.
    p : LocateParams
        Options (read noise, pilot_spots).
    polarity : float
        +1 bright beads, -1 dark beads (matched filter only).
    sigma0 : float
        Starting σ (px).

    Returns
    -------
    float
        Estimated σ (px); ``sigma0`` when too few beads were found.
    """
    sig, snr = [], []
    radius = _radius_for(sigma0, "gaussian")
    tpl = gaussian_template(sigma0, radius)
    for img in frames:
        cand, sc = detector.detect(img, polarity)
        if len(cand) == 0:
            continue
        if len(cand) > 300:  # the strongest candidates are enough (sorted by score)
            top = np.argsort(-sc, kind="stable")[:300]
            cand, sc = cand[top], sc[top]
        crops, valid = extract_crops(img, cand, radius)
        oy, ox, _ = refine_xcorr(crops, valid, tpl, p.upsample)
        pos0 = cand + np.stack([oy, ox], 1)
        w = valid & _neighbour_mask(cand, pos0, radius, pos0)
        res = fit_gaussian(crops, w, oy, ox, sigma0, fit_sigma=True, read_noise=p.read_noise,
                           n_iter=7)
        good = res["ok"] & np.isfinite(res["sigma"]) & (res["sigma"] > 0.35)
        good &= res["sigma"] < 4.0 * sigma0 + 0.9
        sig.append(res["sigma"][good])
        snr.append(np.abs(res["photons"][good]) / np.sqrt(np.maximum(res["var_x"][good], 1e-12)))
        if sum(len(s) for s in sig) >= p.pilot_spots:
            break
    if not sig:
        return sigma0
    s = np.concatenate(sig)
    q = np.concatenate(snr)
    if len(s) < 5:
        return sigma0
    top = q >= np.median(q)  # the better half
    return float(np.median(s[top]))
