"""Bead scale and appearance from the data; one candidate per bead.

A bead of any look (a Gaussian spot, an Airy disc, a defocused ring, a brightfield colloid
with a dark ring round a bright centre) is, at its own scale, a blob: the scale-normalised
Laplacian of Gaussian ``L_σ = -σ² ∇²(G_σ * I)`` has one extremum at its centre when σ is
close to the bead's size (σ ≈ a/√2 for a disc of radius a, σ = s for a Gaussian of σ s).
At smaller scales the parts of a ring (segments of a dark rim, a bright centre) are blobs
of their own — the reason a detector tuned to the wrong size reports several beads per
ring.

:func:`scale_space_blobs` finds the maxima of ``±L_σ`` over position and scale (both
polarities) on a geometric ladder of σ; :func:`nms_radius` suppresses every blob within
another, stronger blob's radius (``2σ``, the bead's extent), whatever its polarity or
scale, so the parts of a ring fall inside the ring's own blob. :func:`estimate_bead_classes`
turns the surviving blobs of a few pilot frames into the movie's bead classes: the
dominant polarity (bright or dark centre relative to the surroundings) and one or more
sizes (modes of the blob-scale histogram: mixed-size movies get one class per size).

Each class then gets a template averaged from the data (see
:func:`scopeflow.track.templates.estimate_template`): detection is the matched filter with
that template (its autocorrelation peaks at zero shift, so each bead gives its largest
response at its centre) followed by non-maximum suppression within the bead radius, and
the profile check :func:`profile_match` rejects candidates whose local image does not
look like the template (static dirt, smudges, specks).

Coordinates (y, x) in px, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "BeadClass",
    "scale_ladder",
    "log_response",
    "scale_space_blobs",
    "nms_radius",
    "estimate_bead_classes",
    "profile_match",
    "diameter_to_sigma",
]

#: ratio between successive scales of the ladder (4 per octave)
_STEP = 2 ** 0.25


@dataclass
class BeadClass:
    """One kind of bead in a movie.

    Attributes
    ----------
    sigma_px : float
        Scale of the bead (LoG σ, px).
    polarity : float
        +1: the bead centre is brighter than its surroundings; -1 darker.
    radius_px : float
        Bead radius (px): the non-maximum-suppression and de-duplication radius.
    n_blobs : int
        Pilot blobs assigned to this class.
    template : ndarray or None
        Data-derived template (set by the localiser).
    mode : str
        ``"gaussian"`` (pixel-integrated Gaussian fit) or ``"template"``.
    pilot_positions : list of ndarray or None
        (y, x) of this class's blobs in each pilot frame (px).
    sigma_fit, crop_radius, gauss_r2, ref_photons, lobe
        Set by :func:`scopeflow.track.appearance.plan_classes`: Gaussian σ of the fit (px),
        crop half-size (px), Gaussian likeness of the template, typical amplitude, and the
        template's side-lobe profile.
    """

    sigma_px: float
    polarity: float
    radius_px: float
    n_blobs: int = 0
    template: np.ndarray | None = field(default=None, repr=False)
    mode: str = "template"
    pilot_positions: list | None = field(default=None, repr=False)
    sigma_fit: float = 0.0
    crop_radius: int = 0
    gauss_r2: float = float("nan")
    ref_photons: float | None = None
    lobe: np.ndarray | None = field(default=None, repr=False)


def diameter_to_sigma(diameter_px: float) -> float:
    """LoG scale of a bead of (trackpy-style) diameter d: ``σ = d / (2√2)``.

    A disc of radius a peaks at σ = a/√2; trackpy's ``diameter`` is the full size of the
    feature (including its blurred edge), so this is a slight over-estimate for Gaussian
    spots, which the ladder around it corrects.
    """
    return float(diameter_px) / (2.0 * math.sqrt(2.0))


def scale_ladder(
    shape: tuple[int, int], diameter_px: float | None = None, *, sigma_min: float = 0.8
) -> np.ndarray:
    """Geometric ladder of LoG scales (4 per octave).

    Parameters
    ----------
    shape : (int, int)
        Frame shape: the largest σ is ``min(shape)/10`` (and ≤ 19 px; the ends of the
        ladder are not scale maxima, so beads up to ~45 px across).
    diameter_px : float, optional
        The user's approximate bead diameter: the ladder spans σ from ``d/8`` to ``d/2``
        around it (the user's value need not be exact, as with trackpy).
    sigma_min : float
        Smallest σ without a diameter (px).

    Returns
    -------
    ndarray
        Scales σ (px), increasing.
    """
    if diameter_px is not None:
        lo, hi = max(0.6, float(diameter_px) / 8.0), max(1.0, float(diameter_px) / 2.0)
    else:
        lo, hi = sigma_min, min(19.0, max(2.0, min(shape) / 10.0))
    n = int(math.floor(math.log(hi / lo) / math.log(_STEP))) + 1
    return lo * _STEP ** np.arange(max(n, 2))


def log_response(image: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised ``-σ² ∇²(G_σ * I)`` (float32): positive at bright blobs of size σ."""
    img = np.asarray(image, dtype=np.float32)
    return (-(sigma**2) * ndimage.gaussian_laplace(img, sigma, mode="reflect")).astype(np.float32)


def pixel_noise(image: np.ndarray) -> float:
    """Robust per-pixel noise σ of a frame: MAD of differences of horizontal neighbours / √2.

    Smooth structure (beads larger than a few px, background) cancels in the differences.
    """
    img = np.asarray(image)
    step = max(1, img.shape[0] // 128)  # ≤ ~128 rows: plenty for a median
    rows = img[::step].astype(np.float32)
    dif = (rows[:, 1:] - rows[:, :-1]).ravel()
    mad = float(np.median(np.abs(dif - np.median(dif))))
    return 1.4826 * mad / math.sqrt(2.0) if mad > 0 else float(dif.std() / math.sqrt(2.0) or 1.0)


@functools.lru_cache(maxsize=64)
def _log_norm(sigma: float) -> float:
    """L2 norm of the discrete scale-normalised LoG kernel (white-noise gain)."""
    r = int(math.ceil(5 * sigma)) + 2
    delta = np.zeros((2 * r + 1, 2 * r + 1), np.float64)
    delta[r, r] = 1.0
    k = -(sigma**2) * ndimage.gaussian_laplace(delta, sigma, mode="constant")
    return float(np.sqrt((k * k).sum()))


def _kernel1d(sigma: float, order: int) -> np.ndarray:
    """Sampled Gaussian (order 0) or its second derivative (order 2), radius ``int(4σ + 0.5)``,
    normalised as :func:`scipy.ndimage.gaussian_filter` does."""
    r = int(4.0 * sigma + 0.5)
    u = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * u * u / sigma**2)
    g /= g.sum()
    return g if order == 0 else (u * u / sigma**4 - 1.0 / sigma**2) * g


def _dft_of_centred(k: np.ndarray, n: int, real: bool) -> np.ndarray:
    """DFT (length n) of a symmetric kernel centred on index 0 (real-valued)."""
    r = len(k) // 2
    a = np.zeros(n)
    a[: r + 1] = k[r:]
    a[n - r:] = k[:r]
    return (np.fft.rfft(a) if real else np.fft.fft(a)).real


def log_stack(image: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """:func:`log_response` at every σ (k, y, x), computed through one FFT of the frame.

    The filter is the same sampled, truncated kernel as :func:`log_response`'s and the frame
    is mirror-padded by the largest kernel radius, so the result equals the spatial filter
    (``mode="reflect"``) to float32 rounding, at a fraction of the cost for large σ.
    """
    from scipy import fft as sfft

    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    pad = int(4.0 * max(sigmas) + 0.5)
    if pad >= min(ny, nx):  # the mirror needs the frame to be larger than the kernel
        return np.stack([log_response(img, s) for s in sigmas])
    a = np.pad(img, pad, mode="symmetric")
    shape = (sfft.next_fast_len(a.shape[0], real=True), sfft.next_fast_len(a.shape[1], real=True))
    f = sfft.rfft2(a, s=shape, workers=1)
    out = np.empty((len(sigmas), ny, nx), np.float32)
    for i, sg in enumerate(sigmas):
        g0, g2 = _kernel1d(float(sg), 0), _kernel1d(float(sg), 2)
        hy0, hy2 = _dft_of_centred(g0, shape[0], False), _dft_of_centred(g2, shape[0], False)
        hx0, hx2 = _dft_of_centred(g0, shape[1], True), _dft_of_centred(g2, shape[1], True)
        h = (-(sg * sg)) * (hy2[:, None] * hx0[None, :] + hy0[:, None] * hx2[None, :])
        r = sfft.irfft2(f * h.astype(np.float32), s=shape, workers=1)
        out[i] = r[pad:pad + ny, pad:pad + nx]
    return out


def _hessian_at(img: np.ndarray, yi: np.ndarray, xi: np.ndarray, sigma: float):
    """``(Hxx - Hyy, Hxy)`` of ``G_σ * I`` at integer points (sampled Gaussian-derivative
    kernels of radius ``ceil(4σ)``, mirrored edges)."""
    r = int(math.ceil(4 * sigma))
    u = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * u * u / sigma**2)
    g /= g.sum()
    g1 = -u / sigma**2 * g
    g2 = (u * u / sigma**4 - 1 / sigma**2) * g
    a = np.pad(np.asarray(img, dtype=np.float32), r, mode="symmetric")
    off = np.arange(2 * r + 1)
    out_d = np.empty(len(yi))
    out_c = np.empty(len(yi))
    for s0 in range(0, len(yi), 256):  # bounded memory for large kernels
        sl = slice(s0, s0 + 256)
        c = a[yi[sl, None, None] + off[None, :, None], xi[sl, None, None] + off[None, None, :]]
        c = c.astype(np.float64)
        out_d[sl] = np.einsum("nab,a,b->n", c, g, g2) - np.einsum("nab,a,b->n", c, g2, g)
        out_c[sl] = np.einsum("nab,a,b->n", c, g1, g1)
    return out_d, out_c


def _scale_maxima(z: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """(k, y, x) of the maxima of ``z`` over its 3×3×3 neighbourhood above ``thresholds[k]``,
    excluding the first and last scale (they cannot hold a scale maximum)."""
    from scopeflow.track.peaks import find_peaks

    k = z.shape[0]
    ks, ys, xs = [], [], []
    zp = None  # the stack with a 1-px edge border, padded once
    for i in range(1, k - 1) if k > 2 else range(k):
        yx = find_peaks(z[i], float(thresholds[i]), 1)
        if not len(yx):
            continue
        yy, xx = yx[:, 0], yx[:, 1]
        v = z[i][yy, xx]
        ok = np.ones(len(yy), bool)
        if zp is None and k > 1:
            zp = np.pad(z, ((0, 0), (1, 1), (1, 1)), mode="edge")
        for j in (i - 1, i + 1):
            if 0 <= j < k:
                pj = zp[j]
                for dy in (0, 1, 2):
                    for dx in (0, 1, 2):
                        ok &= pj[yy + dy, xx + dx] <= v
        ks.append(np.full(int(ok.sum()), i))
        ys.append(yy[ok])
        xs.append(xx[ok])
    if not ks:
        e = np.zeros(0, np.int64)
        return e, e, e
    return np.concatenate(ks), np.concatenate(ys), np.concatenate(xs)


def scale_space_blobs(
    image: np.ndarray, sigmas: Sequence[float], *, min_snr: float = 6.0, max_ratio: float = 4.0
) -> dict[str, np.ndarray]:
    """Maxima of ``±L_σ`` over (y, x, σ), both polarities, strongest first.

    Parameters
    ----------
    image : ndarray (y, x)
        Frame.
    sigmas : sequence of float
        Scales (increasing), e.g. :func:`scale_ladder`.
    min_snr : float
        Keep maxima whose response exceeds this many noise levels of ``L_σ`` (the white-noise
        gain of the filter times :func:`pixel_noise`).
    max_ratio : float
        Drop maxima whose Hessian eigenvalues (at their scale) differ by more than this
        factor: elongated smudges, ring arcs and edges are not beads.

    Returns
    -------
    dict
        ``y, x`` (int px), ``sigma`` (px), ``polarity`` (±1), ``strength`` (scale-normalised
        response, intensity units) and ``snr``, sorted by decreasing strength.
    """
    img = np.asarray(image, dtype=np.float32)
    stack = log_stack(img, sigmas)  # (k, y, x)
    sn = pixel_noise(img)
    noise = np.array([sn * _log_norm(float(s)) for s in sigmas], dtype=np.float32)
    out = {k: [] for k in ("y", "x", "sigma", "polarity", "strength", "snr")}
    for pol in (1.0, -1.0):
        # maxima of the scale-normalised response over (y, x, σ), above min_snr noise levels
        s = stack if pol > 0 else -stack
        ki, yi, xi = _scale_maxima(s, min_snr * noise)
        out["y"].append(yi)
        out["x"].append(xi)
        out["sigma"].append(np.asarray(sigmas, dtype=np.float64)[ki])
        out["polarity"].append(np.full(len(ki), pol))
        out["strength"].append(s[ki, yi, xi].astype(np.float64))
        out["snr"].append((s[ki, yi, xi] / noise[ki]).astype(np.float64))
    res = {key: np.concatenate(v) for key, v in out.items()}
    # elongated structures (smudges, the arcs of a ring, edges) are not beads: Hessian
    # eigenvalue ratio at the blob's scale above max_ratio (Lowe's edge test) -> dropped.
    # With tr = Hxx + Hyy = -L/σ², det = (tr² - (Hxx - Hyy)²)/4 - Hxy².
    iso = np.ones(len(res["y"]), bool)
    for i, sg in enumerate(np.asarray(sigmas, dtype=np.float64)):
        sel = np.flatnonzero(res["sigma"] == sg)
        if not len(sel):
            continue
        yi, xi = res["y"][sel], res["x"][sel]
        dd, hxy = _hessian_at(img, yi, xi, float(sg))
        tr = -stack[i][yi, xi].astype(np.float64) / (sg * sg)
        det = 0.25 * (tr * tr - dd * dd) - hxy * hxy
        r = max_ratio
        iso[sel] = (det > 0) & (tr * tr * r < (r + 1) ** 2 * det)
    res = {key: v[iso] for key, v in res.items()}
    order = np.argsort(-res["strength"], kind="stable")
    return {key: v[order] for key, v in res.items()}


def nms_radius(points: np.ndarray, scores: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Greedy non-maximum suppression with a radius per point.

    A point is dropped when a stronger kept point lies within ``max(r_i, r_j)`` of it.

    Parameters
    ----------
    points : ndarray (n, 2)
        Positions (px).
    scores : ndarray (n,)
        Strength (larger wins).
    radii : ndarray (n,) or float
        Suppression radius of each point (px).

    Returns
    -------
    ndarray (m,) int
        Indices of the kept points, strongest first.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(pts)
    if n == 0:
        return np.zeros(0, np.int64)
    rad = np.broadcast_to(np.asarray(radii, dtype=np.float64), (n,))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    # every pair that suppresses (distance < max(r_i, r_j)), found once, as neighbour lists
    pairs = cKDTree(pts).query_pairs(float(rad.max()), output_type="ndarray")
    if len(pairs):
        d = np.hypot(*(pts[pairs[:, 0]] - pts[pairs[:, 1]]).T)
        pairs = pairs[d < np.maximum(rad[pairs[:, 0]], rad[pairs[:, 1]])]
    if not len(pairs):
        return order.astype(np.int64)
    a = np.concatenate([pairs[:, 0], pairs[:, 1]])
    b = np.concatenate([pairs[:, 1], pairs[:, 0]])
    srt = np.argsort(a, kind="stable")
    nbr = b[srt]
    start = np.searchsorted(a[srt], np.arange(n + 1))
    alive = np.ones(n, bool)
    keep = []
    for i in order.tolist():
        if alive[i]:
            keep.append(i)
            alive[nbr[start[i]:start[i + 1]]] = False
    return np.asarray(keep, dtype=np.int64)


def _modes(log_sigma: np.ndarray, weights: np.ndarray, max_classes: int) -> list[float]:
    """Scales of the main modes of a weighted histogram of log σ (≥ 20 % of the weight,
    separated by ≥ a factor 1.6)."""
    if len(log_sigma) == 0:
        return []
    step = math.log(_STEP)
    lo, hi = log_sigma.min() - step, log_sigma.max() + step
    nb = max(3, int(round((hi - lo) / step)) + 1)
    hist, edges = np.histogram(log_sigma, bins=nb, range=(lo, hi), weights=weights)
    hs = np.convolve(hist, [0.25, 0.5, 0.25], mode="same")
    centres = 0.5 * (edges[1:] + edges[:-1])
    peaks = [i for i in range(nb) if hs[i] > 0 and hs[i] >= hs[max(i - 1, 0)]
             and hs[i] >= hs[min(i + 1, nb - 1)]]
    peaks.sort(key=lambda i: -hs[i])
    total = hist.sum()
    chosen: list[float] = []
    for i in peaks:
        c = centres[i]
        if any(abs(c - q) < math.log(1.6) for q in chosen):
            continue
        # the weight near this mode (±1/2 octave)
        near = np.abs(log_sigma - c) < math.log(2) / 2
        if weights[near].sum() < 0.2 * total and chosen:
            continue
        # refine: weighted median of the blobs near the mode
        ls, ws = log_sigma[near], weights[near]
        o = np.argsort(ls)
        cw = np.cumsum(ws[o])
        chosen.append(float(ls[o][np.searchsorted(cw, 0.5 * cw[-1])]) if len(o) else c)
        if len(chosen) >= max_classes:
            break
    return sorted(chosen)


def estimate_bead_classes(
    frames: Iterable[np.ndarray],
    *,
    diameter_px: float | None = None,
    polarity: float | None = None,
    max_classes: int = 3,
    max_blobs: int = 600,
    min_snr: float = 6.0,
) -> list[BeadClass]:
    """The movie's bead classes (polarity and size) from scale-space blobs of pilot frames.

    Parameters
    ----------
    frames : iterable of ndarray (y, x)
        Pilot frames (photons or raw; any real dtype).
    diameter_px : float, optional
        Approximate bead diameter (px): restricts the scales to ``d/8 … d/2`` and forces a
        single size class.
    polarity : float, optional
        +1 (bead centre bright) or -1 (dark); default decided from the data: the polarity
        of most of the strongest blobs that survive the suppression.
    max_classes : int
        Most size classes (mixed-size movies).
    max_blobs : int
        Stop reading pilot frames after this many surviving blobs.
    min_snr : float
        Blob threshold (robust noise units of the LoG response).

    Returns
    -------
    list of BeadClass
        Smallest first; empty when no blob was found.
    """
    pts, sig, pol, strength, fid = [], [], [], [], []
    sigmas = None
    for i, img in enumerate(frames):
        img = np.asarray(img)
        if sigmas is None:
            sigmas = scale_ladder(img.shape, diameter_px)
        b = scale_space_blobs(img, sigmas, min_snr=min_snr)
        if not len(b["y"]):
            continue
        p = np.stack([b["y"], b["x"]], 1).astype(np.float64)
        # overlapping blobs: the larger scale is favoured (a whole bead over its parts)
        keep = nms_radius(p, b["strength"] * b["sigma"], 2.5 * b["sigma"])
        pts.append(p[keep])
        sig.append(b["sigma"][keep])
        pol.append(b["polarity"][keep])
        strength.append(b["strength"][keep])
        fid.append(np.full(len(keep), i))
        if sum(len(s) for s in sig) >= max_blobs:
            break
    if not sig:
        return []
    pts_a = np.concatenate(pts)
    sig_a = np.concatenate(sig)
    pol_a = np.concatenate(pol)
    st = np.concatenate(strength)
    fid_a = np.concatenate(fid)
    if polarity is None:
        # the strongest blobs decide (weak ones are noise and the parts of rings)
        top = st >= np.quantile(st, 0.5)
        bright = np.sum(st[top] * (pol_a[top] > 0))
        polarity = 1.0 if bright >= np.sum(st[top] * (pol_a[top] < 0)) else -1.0
    # blobs much weaker than the typical bead are noise: weight the histogram by strength
    sel = (pol_a == polarity) & (st >= 0.4 * np.quantile(st[pol_a == polarity], 0.9)
                                 if np.any(pol_a == polarity) else False)
    if not np.any(sel):
        return []
    ls = np.log(sig_a[sel])
    modes = _modes(ls, st[sel], 1 if diameter_px else max_classes)
    # each blob to its nearest mode; a smaller class whose blobs mostly lie inside the
    # beads of a larger class is made of the parts of those beads (a ring's rim, its
    # centre): drop it
    lab = np.argmin(np.abs(ls[:, None] - np.array(modes)[None, :]), axis=1) if modes else ls
    p_sel, f_sel = pts_a[sel], fid_a[sel]
    kept = [k for k in range(len(modes)) if np.sum(lab == k) >= max(3, 0.1 * len(lab))]
    for big in sorted(kept, reverse=True):
        if big not in kept:
            continue
        sb = math.exp(modes[big])
        for small in [k for k in kept if k < big]:
            ps = p_sel[lab == small]
            pb = p_sel[lab == big]
            # against the big blobs of every pilot frame: beads move little between frames,
            # and in some frame a ring's centre loses to one of its parts
            d, _ = cKDTree(pb).query(ps) if len(pb) else (np.full(len(ps), np.inf), None)
            inside = int(np.sum(d < 3.5 * sb))
            if inside > 0.5 * len(ps):
                kept.remove(small)
    # a class whose blobs do not move between pilot frames is static dirt, not beads
    # (kept when it is the only class)
    if len(kept) > 1 and len(np.unique(f_sel)) >= 2:
        moving = []
        for k in kept:
            ps, fs = p_sel[lab == k], f_sel[lab == k]
            same = tot = 0
            for f in np.unique(fs)[:-1]:
                nxt = fs == f + 1
                if not np.any(nxt):
                    continue
                d, _ = cKDTree(ps[nxt]).query(ps[fs == f])
                same += int(np.sum(d < 0.3))
                tot += len(d)
            moving.append(tot == 0 or same < 0.7 * tot)
        if any(moving):
            kept = [k for k, mv in zip(kept, moving, strict=True) if mv]
    classes = []
    n_frames = int(fid_a.max()) + 1
    for k in kept:
        s = math.exp(modes[k])
        radius = 0.5 * diameter_px if diameter_px else 2.0 * s
        mine = lab == k
        pos = [p_sel[mine & (f_sel == f)] for f in range(n_frames)]
        classes.append(BeadClass(sigma_px=s, polarity=float(polarity), radius_px=float(radius),
                                 n_blobs=int(np.sum(mine)), pilot_positions=pos))
    return classes


def profile_match(crops: np.ndarray, valid: np.ndarray, models: np.ndarray,
                  background: np.ndarray, radius: float) -> np.ndarray:
    """Correlation coefficient between each crop and its fitted bead model inside a disc.

    Parameters
    ----------
    crops : ndarray (n, k, k)
        Data (photons).
    valid : ndarray (n, k, k) bool
        Pixels to use.
    models : ndarray (n, k, k)
        Fitted bead signal (expected photons minus background) on the same grid.
    background : ndarray (n,)
        Fitted background per crop (photons/px).
    radius : float
        Disc radius (px) around the crop centre.

    Returns
    -------
    ndarray (n,)
        ``Σ (d - b) m / sqrt(Σ (d - b)² Σ m²)`` over the disc: 1 for a perfect match, about
        ``sqrt(S / (S + noise))`` for a true bead in noise, low for dirt of another shape.
    """
    n, k, _ = crops.shape
    c = k // 2
    yy, xx = np.indices((k, k))
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= radius * radius
    w = valid & disc[None]
    d = np.where(w, crops - background[:, None, None], 0.0)
    m = np.where(w, models, 0.0)
    num = (d * m).sum(axis=(1, 2))
    den = np.sqrt((d * d).sum(axis=(1, 2)) * (m * m).sum(axis=(1, 2)))
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
