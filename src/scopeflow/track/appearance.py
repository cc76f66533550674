"""Appearance-aware bead localisation (``profile="auto"``, the default of ``locate_stack``).

1. **Classes** – :func:`scopeflow.track.detect.estimate_bead_classes` finds the movie's
   bead polarity and size(s) from scale-space blobs of pilot frames (or from the user's
   approximate ``diameter_px``).
2. **Templates** – for each class, the beads of the pilot frames (peaks of the LoG at the
   class scale, one per bead radius) are cropped, averaged, then re-aligned on the average
   by cross-correlation and averaged again (:func:`~scopeflow.track.templates.estimate_template`):
   the template is the data's own bead, halo and rings included.
   A class whose template is a Gaussian spot (:func:`gaussian_likeness` ≥ 0.97, i.e. the
   radial profile is a Gaussian to within 3 % of its energy) is fitted with the
   pixel-integrated Gaussian (fast compiled path, reaches the CRLB); others with the template.
3. **Detection** – per frame and class: the matched filter with the class template (SNR
   units), local maxima at least one bead radius apart; candidates of several classes are
   merged by non-maximum suppression within the larger radius (the stronger SNR wins:
   the matched filter of the right template has the largest SNR).
4. **Placement** – cross-correlation with the template then the Poisson-likelihood fit
   (:func:`~scopeflow.track.frame._localize_frame`); fits that converge within a bead
   radius of a better one are merged.
5. **Profile check** – :func:`scopeflow.track.detect.profile_match`: the correlation
   between the crop and the fitted bead must reach ``match_factor`` × its expected value for
   the fitted amplitude and the frame's pixel noise; dirt and smudges of another shape fail.

Coordinates (y, x) in px, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

import scopeflow.track._fast as _fast
from scopeflow.track.fit import _erf_weights, _neighbour_mask
from scopeflow.track.frame import _Detector, _fit, _localize_frame, estimate_sigma
from scopeflow.track.params import LocateParams
from scopeflow.track.peaks import (
    _gauss_box_kernels,
    _gaussian_response_std,
    extract_crops,
    find_peaks,
)
from scopeflow.track.refine import _centred_freqs
from scopeflow.track.templates import estimate_template, gaussian_template
from scopeflow.track.detect import (
    BeadClass,
    _log_norm,
    estimate_bead_classes,
    log_response,
    nms_radius,
    pixel_noise,
    profile_match,
)

__all__ = ["gaussian_likeness", "plan_classes", "localize_frame_classes", "localize_mass_features"]

#: detection peaks are at least this many bead radii apart (square window)
NMS_FACTOR = 1.0
#: a class whose template explains this fraction of its energy as a Gaussian is fitted as one
GAUSS_R2 = 0.97
#: ``minmass`` features: the fitted centre replaces the band-pass centroid from this
#: amplitude SNR up (below it the centre of a faint, extended blob depends on the bead
#: model more than on the data: on trackpy_bulk_water fit and centroid differ by > 1 px for
#: a third of the features with SNR < 15, for < 1 % above)
FIT_SNR = 15.0


def gaussian_likeness(template: np.ndarray) -> tuple[float, float]:
    """How well a centred template is a Gaussian spot: (R², σ px).

    Fits ``A·exp(-r²/2σ²)`` (σ on a grid, A by least squares) to the template's values
    and returns the fraction of its energy explained and the best σ.
    """
    t = np.asarray(template, dtype=np.float64)
    k = t.shape[0]
    c = k // 2
    yy, xx = np.indices(t.shape)
    r2 = (yy - c) ** 2 + (xx - c) ** 2
    sgn = 1.0 if t[c, c] >= 0 else -1.0
    v = t.ravel() * sgn
    tot = float(v @ v)
    best = (-np.inf, 1.0)
    for s in np.geomspace(0.5, max(1.0, k / 3.0), 60):
        g = np.exp(-r2.ravel() / (2 * s * s))
        a = float(g @ v) / float(g @ g)
        r2_ = 1.0 - float(((v - a * g) ** 2).sum()) / max(tot, 1e-300)
        if r2_ > best[0]:
            best = (r2_, float(s))
    return best


def _log_peaks(img: np.ndarray, cls: BeadClass, threshold: float) -> np.ndarray:
    r = log_response(img, cls.sigma_px) * np.float32(cls.polarity)
    noise = pixel_noise(img) * _log_norm(float(cls.sigma_px))
    return find_peaks(r / max(noise, 1e-12), threshold, max(1, int(round(cls.radius_px))))


def plan_classes(
    pilot: list[np.ndarray],
    p: LocateParams,
    diameter_px: float | None,
    polarity: float | None,
) -> list[BeadClass]:
    """Bead classes with their template, fit mode and crop radius from pilot frames.

    Parameters
    ----------
    pilot : list of ndarray (y, x)
        Pilot frames (photons).
    p : LocateParams
        Options (snr_threshold, upsample, read_noise, sigma_px).
    diameter_px : float, optional
        Approximate bead diameter (px).
    polarity : float, optional
        +1 bright-centred beads, -1 dark-centred; None = from the data.

    Returns
    -------
    list of BeadClass
        Each with ``template`` (Σ|T| = 1, signed), ``mode`` and attribute ``crop_radius``.
    """
    classes = estimate_bead_classes(pilot, diameter_px=diameter_px, polarity=polarity)
    for cls in classes:
        crop = int(max(4, math.ceil(3.5 * cls.sigma_px)))
        if diameter_px:
            crop = int(max(crop, math.ceil(0.9 * diameter_px)))
        if cls.pilot_positions is not None and sum(map(len, cls.pilot_positions)) >= 3:
            pos = list(cls.pilot_positions)  # this class's own blobs: no other size mixed in
        else:
            pos, n = [], 0
            for img in pilot:
                yx = _log_peaks(img, cls, max(p.snr_threshold, 6.0))
                pos.append(yx.astype(np.float64))
                n += len(yx)
                if n >= 1500:
                    break
        try:
            t0 = estimate_template(pilot[: len(pos)], pos, crop, max_spots=1500)
            tpl = estimate_template(pilot[: len(pos)], pos, crop, iterations=2, initial=t0,
                                      upsample=p.upsample, max_spots=1500)
        except ValueError:
            tpl = gaussian_template(cls.sigma_px, crop) * cls.polarity
        r2, s_g = gaussian_likeness(tpl)
        cls.crop_radius = crop
        cls.gauss_r2 = r2
        if r2 >= GAUSS_R2 and s_g <= 3.0:
            cls.mode = "gaussian"
            cls.sigma_fit = float(p.sigma_px) if p.sigma_px else s_g
            cls.crop_radius = int(max(4, math.ceil(3.5 * cls.sigma_fit)))
            cls.template = gaussian_template(cls.sigma_fit, cls.crop_radius)
        else:
            cls.mode = "template"
            cls.sigma_fit = cls.sigma_px
            cls.template = tpl
        if not diameter_px:
            cls.radius_px = template_radius(tpl)
        cls.lobe = sidelobe_profile(cls.template, cls.radius_px)
    return classes


def template_radius(template: np.ndarray, level: float = 0.2) -> float:
    """Bead radius from a centred template: the largest radius where the radial profile's
    magnitude still reaches ``level`` × its maximum (px, ≥ 1.5; halos below that level are
    not counted)."""
    t = np.asarray(template, dtype=np.float64)
    k = t.shape[0]
    c = k // 2
    yy, xx = np.indices(t.shape)
    r = np.hypot(yy - c, xx - c)
    rb = np.round(r).astype(int)
    prof = np.bincount(rb.ravel(), np.abs(t).ravel()) / np.maximum(np.bincount(rb.ravel()), 1)
    prof = prof[: c + 1]
    above = np.flatnonzero(prof >= level * prof.max())
    return float(max(1.5, above.max() + 0.5 if len(above) else 1.5))


def refine_gaussian_sigma(pilot: list[np.ndarray], cls: BeadClass, p: LocateParams) -> None:
    """Gaussian-class σ from free-σ fits of the pilot beads (``frame.estimate_sigma``)."""
    if cls.mode != "gaussian" or p.sigma_px:
        return
    det = _Detector(None, p, cls.sigma_fit, None)
    det.min_distance = max(2, int(round(cls.radius_px)))
    s = estimate_sigma(iter(pilot), det, p, cls.polarity, cls.sigma_fit)
    cls.sigma_fit = s
    cls.crop_radius = int(max(4, math.ceil(3.5 * s)))
    cls.template = gaussian_template(s, cls.crop_radius)
    cls.lobe = sidelobe_profile(cls.template, cls.radius_px)


def _score(img: np.ndarray, cls: BeadClass, noise: float) -> np.ndarray:
    """Matched-filter SNR map: response / (white-noise gain of the filter × pixel noise).

    The pixel noise comes from neighbour differences (:func:`pixel_noise`), not from the
    spread of the response, so dense or large beads do not inflate it.
    """
    from scipy.signal import oaconvolve

    img32 = np.asarray(img, dtype=np.float32)
    img32 = img32 - np.float32(np.median(img32[::3, ::3]))
    if cls.mode == "gaussian":
        s_fit = float(cls.sigma_fit)
        g, size = _gauss_box_kernels(s_fit)
        if _fast.HAVE_NUMBA:
            r = _fast.gauss_minus_box(img32, g)
        else:
            from scipy import ndimage

            c1, u1 = ndimage.correlate1d, ndimage.uniform_filter1d
            r = c1(c1(img32, g, 0, mode="constant"), g, 1, mode="constant")
            r -= u1(u1(img32, size, 0, mode="constant"), size, 1, mode="constant")
        std = _gaussian_response_std(img32.shape, s_fit)
        return _to_snr(r * np.float32(cls.polarity), std, noise, cls.radius_px)
    t = np.asarray(cls.template, dtype=np.float64)
    t = (t - t.mean()).astype(np.float32)
    r = oaconvolve(img32, t[::-1, ::-1], mode="same").astype(np.float32)
    std = _tpl_std(img32.shape, t.tobytes(), t.shape[0])
    return _to_snr(r, std, noise, cls.radius_px)


def _to_snr(r: np.ndarray, std: np.ndarray, noise: float, radius: float) -> np.ndarray:
    """Response / (white-noise std map × noise level).

    The noise level is the larger of the pixel noise (neighbour differences) and the robust
    spread (MAD) of the normalised response itself: real frames carry structured background
    (out-of-focus beads, texture, compression blocks) that pixel differences do not see,
    while in crowded frames of large beads the MAD alone would be inflated by the beads:
    the MAD is taken again without the pixels within a bead radius of the strong (> 4 MAD)
    responses.
    """
    from scipy import ndimage

    z = r / std
    sub = z[::3, ::3]
    med = float(np.median(sub))
    mad = 1.4826 * float(np.median(np.abs(sub - med)))
    if mad > 0:
        strong = np.abs(sub - med) > 4 * mad
        m = int(math.ceil(radius / 3.0))
        near = ndimage.maximum_filter(strong, size=2 * m + 1) if m > 0 else strong
        rest = sub[~near]
        if rest.size >= 200:
            med = float(np.median(rest))
            mad = 1.4826 * float(np.median(np.abs(rest - med)))
    level = max(float(noise), mad if mad > 0 else 0.0, 1e-12)
    return ((z - np.float32(med)) / np.float32(level)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _tpl_std(shape: tuple[int, int], tbytes: bytes, k: int) -> np.ndarray:
    """White-noise std of the zero-padded correlation with a template (edges included)."""
    from scipy.signal import oaconvolve

    t = np.frombuffer(tbytes, dtype=np.float32).reshape(k, k).astype(np.float64)
    var = oaconvolve(np.ones(shape), (t * t)[::-1, ::-1], mode="same")
    out = np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)
    out.setflags(write=False)
    return out


def sidelobe_profile(template: np.ndarray, radius_px: float) -> np.ndarray:
    """Largest normalised autocorrelation of a template at each integer distance.

    ``lobe[d]`` = max of ``A(δ)/A(0)`` over shifts with ``|δ|`` rounding to d; 1 inside the
    bead radius. A matched-filter peak within reach of a stronger one is a side lobe
    (a ring's echo) when it is not clearly above ``lobe[d]`` × the stronger peak.
    """
    from scipy.signal import fftconvolve

    t = np.asarray(template, dtype=np.float64)
    t = t - t.mean()
    a = fftconvolve(t, t[::-1, ::-1], mode="full")
    c = a.shape[0] // 2
    a = a / a[c, c]
    yy, xx = np.indices(a.shape)
    d = np.round(np.hypot(yy - c, xx - c)).astype(int)
    lobe = np.zeros(d.max() + 1)
    np.maximum.at(lobe, d.ravel(), np.clip(a.ravel(), 0, None))
    lobe = np.maximum(lobe, np.maximum(np.r_[lobe[1:], 0.0], np.r_[0.0, lobe[:-1]]))  # ±1 px
    lobe[: int(math.ceil(radius_px)) + 1] = 1.0
    return lobe


def suppress_sidelobes(cand: np.ndarray, score: np.ndarray, lobe: np.ndarray,
                       margin: float = 2.0) -> np.ndarray:
    """Indices of candidates that are not side lobes of a stronger candidate (see above)."""
    n = len(cand)
    if n < 2:
        return np.arange(n)
    from scipy.spatial import cKDTree

    order = np.argsort(-score, kind="stable")
    pts = cand.astype(np.float64)
    tree = cKDTree(pts)
    alive = np.ones(n, bool)
    reach = len(lobe) - 1
    for i in order:
        if not alive[i]:
            continue
        for j in tree.query_ball_point(pts[i], reach):
            if j == i or not alive[j] or score[j] > score[i]:
                continue
            dd = int(round(math.hypot(*(pts[j] - pts[i]))))
            if dd < len(lobe) and score[j] < margin * lobe[dd] * score[i]:
                alive[j] = False
    return np.sort(np.flatnonzero(alive))


def _shifted_templates(template: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    k = template.shape[0]
    f = _centred_freqs(k)
    ph = np.exp(-2j * np.pi * (dy[:, None, None] * f[:, None] + dx[:, None, None] * f[None, :]) / k)
    return np.fft.ifft2(np.fft.fft2(template)[None] * ph).real


def localize_frame_classes(
    img: np.ndarray,
    classes: list[BeadClass],
    p: LocateParams,
    *,
    match_factor: float = 0.6,
    noise: float | None = None,
    min_rel_photons: float = 0.0,
    detector: Callable | None = None,
) -> dict[str, np.ndarray]:
    """Detect, place and check the beads of every class in one frame (photons).

    ``detector(img, classes) -> (yx, score)``: shared candidates (e.g. BeadNet's) instead of
    each class's matched filter; every class places and checks them, merged as below.
    ``min_rel_photons``: template classes drop fits whose amplitude is below this fraction
    of the class's reference amplitude ``ref_photons`` (the median of the pilot frame's
    beads; brightfield beads of one size have similar contrast, echoes of halos do not).

    Returns the column arrays of :data:`~scopeflow.track.localize.LOC_COLUMNS` (no
    ``frame``) plus ``cls`` (class index) and ``match`` (profile correlation / expected).
    """
    cols = ("y", "x", "photons", "background", "ep_px", "sigma_px", "score", "snr", "chi2")
    sn = pixel_noise(img) if noise is None else noise
    cands, scores, owner = [], [], []
    shared = detector(img, classes) if detector is not None else None
    for ci, cls in enumerate(classes):
        if shared is not None:  # the same candidates for every class
            yx, sc_i = shared
        else:
            s = _score(img, cls, sn)
            yx = find_peaks(s, p.snr_threshold, max(1, int(round(NMS_FACTOR * cls.radius_px))))
            if len(yx) > 1 and cls.mode == "template":
                keep = suppress_sidelobes(yx, s[yx[:, 0], yx[:, 1]], cls.lobe)
                yx = yx[keep]
            sc_i = s[yx[:, 0], yx[:, 1]] if len(yx) else np.zeros(0, np.float32)
        cands.append(yx)
        scores.append(sc_i)
        owner.append(np.full(len(yx), ci))
    cand = np.concatenate(cands) if cands else np.zeros((0, 2), np.int64)
    sc = np.concatenate(scores) if scores else np.zeros(0)
    own = np.concatenate(owner) if owner else np.zeros(0, int)
    parts = []
    for ci, cls in enumerate(classes):
        sel = own == ci
        c_i = cand[sel]
        if not len(c_i):
            continue
        # the neighbour-model refit is for Gaussian spots (templates: pixels nearer another
        # bead are masked instead)
        pc = p if cls.mode == "gaussian" or not p.neighbours else LocateParams(
            **{**p.__dict__, "neighbours": False})
        out = _localize_frame(img, c_i, sc[sel], pc, cls.crop_radius, cls.sigma_fit,
                                cls.template, cls.mode, dedup_px=cls.radius_px)
        if not len(out["y"]):
            continue
        # profile check on the fitted position
        pos = np.stack([out["y"], out["x"]], 1)
        ci_int = np.round(pos).astype(np.int64)
        crops, valid = extract_crops(img, ci_int, cls.crop_radius)
        t = np.asarray(cls.template, dtype=np.float64)
        t = t / np.abs(t).sum()
        if cls.mode == "gaussian":  # separable pixel-integrated Gaussian: no FFT needed
            u = np.arange(-cls.crop_radius, cls.crop_radius + 1, dtype=np.float64)
            sg = np.full(len(pos), float(cls.sigma_fit))
            ey = _erf_weights(pos[:, 0] - ci_int[:, 0], sg, u)[0]
            ex = _erf_weights(pos[:, 1] - ci_int[:, 1], sg, u)[0]
            m = ey[:, :, None] * ex[:, None, :]
            centre_sign = 1.0 if t[t.shape[0] // 2, t.shape[0] // 2] >= 0 else -1.0
            m = m / np.abs(m).sum(axis=(1, 2))[:, None, None] * centre_sign
        else:
            m = _shifted_templates(t, pos[:, 0] - ci_int[:, 0], pos[:, 1] - ci_int[:, 1])
        sign = np.sign(t[t.shape[0] // 2, t.shape[0] // 2]) or 1.0
        m = m * (out["photons"] * sign * cls.polarity)[:, None, None]
        disc_r = 1.5 * cls.radius_px + 1.0
        rho = profile_match(crops, valid, m, out["background"], disc_r)
        k = crops.shape[1]
        yy, xx = np.indices((k, k))
        disc = ((yy - k // 2) ** 2 + (xx - k // 2) ** 2) <= disc_r**2
        ss = ((m * m) * (valid & disc[None])).sum(axis=(1, 2))
        npx = (valid & disc[None]).sum(axis=(1, 2))
        expect = np.sqrt(ss / np.maximum(ss + npx * sn * sn, 1e-300))
        ratio = rho / np.maximum(expect, 1e-12)
        good = ratio >= match_factor
        ref = getattr(cls, "ref_photons", None)
        if min_rel_photons > 0 and ref and cls.mode == "template":
            good &= out["photons"] >= min_rel_photons * ref
        out = {key: v[good] for key, v in out.items()}
        out["cls"] = np.full(int(good.sum()), ci)
        out["match"] = ratio[good]
        parts.append(out)
    if not parts:
        return {key: np.zeros(0) for key in (*cols, "cls", "match")}
    res = {key: np.concatenate([o[key] for o in parts]) for key in (*cols, "cls", "match")}
    if len(classes) > 1 and len(res["y"]) > 1:
        # fits of two classes on one bead (a small template on a large bead's rim, a large
        # one on a small bead): the better profile match wins, then the larger SNR
        rad = np.array([classes[int(c)].radius_px for c in res["cls"]])
        rank = np.round(np.minimum(res["match"], 1.0), 2) * 1e6 + np.minimum(res["snr"], 1e5)
        keep = np.sort(nms_radius(np.stack([res["y"], res["x"]], 1), rank, rad))
        res = {key: v[keep] for key, v in res.items()}
    return res


def localize_mass_features(
    raw: np.ndarray,
    img: np.ndarray,
    cls: BeadClass,
    p: LocateParams,
    diameter: float,
    minmass: float,
) -> dict[str, np.ndarray]:
    """The features a ``diameter``/``minmass`` pair defines, placed by the bead fit.

    Features are :func:`scopeflow.track.mass.bandpass_features` of the raw frame (the
    Crocker–Grier definition trackpy users chose ``minmass`` on: band-pass maxima at least
    ``diameter + 1`` apart, not within ``diameter // 2`` of an edge, mass > ``minmass``).
    Each is fitted with the class's bead model started at its centroid (neighbours' pixels
    masked); the fitted centre is reported where the fit converged with the bead's polarity
    and amplitude SNR ≥ :data:`FIT_SNR`, the centroid elsewhere.

    Parameters
    ----------
    raw : ndarray (y, x)
        Raw frame (for the band-pass and the mass).
    img : ndarray (y, x)
        The same frame in photons (for the fit).
    cls : BeadClass
        Planned class (template/σ, crop radius, polarity).
    p : LocateParams
        Options (n_iter, read_noise, ep_scale).
    diameter, minmass : float
        Feature diameter (px) and mass threshold.

    Returns
    -------
    dict
        Columns of :data:`~scopeflow.track.localize.LOC_COLUMNS` (no ``frame``) plus
        ``mass``; ``ep_px`` combines the fit's error with its distance to the centroid
        where the centroid is kept; ``score`` is the mass.
    """
    from scopeflow.track.mass import bandpass_features

    f = bandpass_features(raw, diameter, minmass, invert=bool(cls.polarity < 0))
    n = len(f["y"])
    keys = ("y", "x", "photons", "background", "ep_px", "sigma_px", "score", "snr", "chi2",
            "mass")
    if n == 0:
        return {k: np.zeros(0) for k in keys}
    c0 = np.stack([f["y"], f["x"]], 1)
    cand = np.round(c0).astype(np.int64)
    r = int(cls.crop_radius)
    crops, valid = extract_crops(img, cand, r)
    w = valid & _neighbour_mask(cand, c0, r, c0)
    res = _fit(crops, w, c0[:, 0] - cand[:, 0], c0[:, 1] - cand[:, 1], p, cls.mode,
                 cls.sigma_fit, cls.template, p.n_iter)
    chi = np.maximum(res["chi2"], 1e-6) if p.ep_scale == "chi2" else np.ones(n)
    var = 0.5 * (res["var_y"] + res["var_x"]) * chi
    snr = np.abs(res["photons"]) / np.sqrt(np.maximum(res["var_photons"] * chi, 1e-300))
    fy, fx = cand[:, 0] + res["dy"], cand[:, 1] + res["dx"]
    # a bead has the sign of its model: the Gaussian is positive (dark beads: negative
    # amplitude); a data-derived template carries the bead's own sign
    ok = res["ok"] & np.isfinite(var) & np.isfinite(fy) & np.isfinite(fx)
    ok &= np.sign(res["photons"]) == (cls.polarity if cls.mode == "gaussian" else 1.0)
    use = ok & (snr >= FIT_SNR)
    shift = np.where(ok, np.hypot(fy - c0[:, 0], fx - c0[:, 1]), 0.0)
    ep = np.sqrt(np.maximum(np.where(ok, var, np.nan), 0))
    return {
        "y": np.where(use, fy, c0[:, 0]), "x": np.where(use, fx, c0[:, 1]),
        "photons": np.abs(res["photons"]), "background": res["background"].astype(np.float64),
        "ep_px": np.where(use, ep, np.hypot(ep, shift / math.sqrt(2.0))),
        "sigma_px": np.asarray(res["sigma"], dtype=np.float64), "score": f["mass"],
        "snr": snr, "chi2": np.asarray(res["chi2"], dtype=np.float64), "mass": f["mass"],
    }


def _count_blobs(img: np.ndarray) -> int:
    """Rough count of strong blobs in a frame (LoG at 2 px, > 8 noise levels), to size the pilot."""
    r = np.abs(log_response(img, 2.0))
    noise = pixel_noise(img) * _log_norm(2.0)
    return int(len(find_peaks(r / max(noise, 1e-12), 8.0, 4)))


def _nearest(classes: list[BeadClass], diameter: float) -> BeadClass:
    """The class whose diameter is nearest ``diameter``."""
    return min(classes, key=lambda c: abs(math.log(2.0 * c.radius_px / float(diameter))))


def classes_to_records(classes: list[BeadClass]) -> list[dict]:
    """JSON-able description of planned classes (templates as nested lists)."""
    out = []
    for c in classes:
        out.append(dict(
            sigma_px=float(c.sigma_px), sigma_fit=float(c.sigma_fit),
            radius_px=float(c.radius_px), polarity=float(c.polarity), mode=c.mode,
            crop_radius=int(c.crop_radius), gauss_r2=float(c.gauss_r2),
            n_blobs=int(c.n_blobs), ref_photons=getattr(c, "ref_photons", None),
            template=np.asarray(c.template).tolist(),
        ))
    return out


def classes_from_records(records: list[dict]) -> list[BeadClass]:
    """Inverse of :func:`classes_to_records` (a bead model held fixed across blocks)."""
    classes = []
    for r in records:
        c = BeadClass(sigma_px=float(r["sigma_px"]), polarity=float(r["polarity"]),
                      radius_px=float(r["radius_px"]), n_blobs=int(r.get("n_blobs", 0)),
                      template=np.asarray(r["template"], dtype=np.float64), mode=r["mode"])
        c.sigma_fit = float(r["sigma_fit"])
        c.crop_radius = int(r["crop_radius"])
        c.gauss_r2 = float(r.get("gauss_r2", float("nan")))
        c.ref_photons = r.get("ref_photons")
        c.lobe = sidelobe_profile(c.template, c.radius_px)
        classes.append(c)
    return classes


def locate_auto(
    frames_list,
    n_frames: int,
    p: LocateParams,
    to_photons: Callable[[np.ndarray], np.ndarray],
    *,
    diameter_px: float | None,
    polarity: float | None,
    match_factor: float,
    minmass: float | None = None,
    min_rel_photons: float = 0.25,
    classes: list[dict] | None = None,
    detector: Callable | None = None,
) -> tuple[list[BeadClass], Callable[[int], dict[str, np.ndarray]]]:
    """Plan the classes on pilot frames; return them and the per-frame function.

    With ``minmass`` the features are those ``diameter``/``minmass`` define, as for trackpy
    (:func:`localize_mass_features`, with the user's diameter or twice the first class
    radius), with their ``mass``. ``detector``: see :func:`localize_frame_classes`.
    """
    if classes is not None:  # a bead model held fixed (e.g. from a movie's first block)
        fixed = classes_from_records(classes)
        d_fix = float(diameter_px) if diameter_px else 2.0 * fixed[0].radius_px

        def one_fixed(i: int) -> dict[str, np.ndarray]:
            raw = np.asarray(frames_list[i])
            if minmass is not None:
                return localize_mass_features(raw, to_photons(raw), _nearest(fixed, d_fix), p,
                                              d_fix, minmass)
            return localize_frame_classes(to_photons(raw), fixed, p, match_factor=match_factor,
                                          min_rel_photons=min_rel_photons, detector=detector)

        return fixed, one_fixed
    # pilot frames: read until ~300 beads were seen (at most ``pilot_frames``)
    n_pilot = min(n_frames, max(1, p.pilot_frames))
    pilot: list[np.ndarray] = []
    counts: list[int] = []
    for i in range(n_pilot):
        img = to_photons(frames_list[i])
        pilot.append(img)
        counts.append(_count_blobs(img))
        if sum(counts) >= 300 and len(pilot) >= 2:
            break
    # sizes and templates from the first frames holding ~100 beads (at least 6 frames;
    # scale space is the costly part); the Gaussian σ from the whole pilot
    n_plan = min(len(pilot), max(6, int(np.searchsorted(np.cumsum(counts), 100)) + 1))
    classes = plan_classes(pilot[:n_plan], p, diameter_px, polarity)
    for cls in classes:
        refine_gaussian_sigma(pilot, cls, p)

    d_mass = float(diameter_px) if diameter_px else (2.0 * classes[0].radius_px if classes else 9)
    if classes and min_rel_photons > 0 and minmass is None:  # reference amplitude per class
        ref = localize_frame_classes(pilot[0], classes, p, match_factor=match_factor,
                                     detector=detector)
        for ci, cls in enumerate(classes):
            ph = ref["photons"][ref["cls"] == ci]
            cls.ref_photons = float(np.median(ph)) if len(ph) >= 3 else None

    def one(i: int) -> dict[str, np.ndarray]:
        raw = np.asarray(frames_list[i])
        if minmass is not None:
            return localize_mass_features(raw, to_photons(raw), _nearest(classes, d_mass), p,
                                          d_mass, minmass)
        return localize_frame_classes(to_photons(raw), classes, p, match_factor=match_factor,
                                      min_rel_photons=min_rel_photons, detector=detector)

    return classes, one
