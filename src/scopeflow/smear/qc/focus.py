"""Classical focus metrics of a whole image (field of view) and their scoring against a sample.

Every metric takes a 2-D image indexed (y, x) (any real dtype; the whole-image metrics are
computed in float64, the tiled scores of the FOV table on float32 images, on the values as
given, so compare only images of the same modality and scaling) and returns one
float, higher = sharper. Metrics are means over pixels, so they do not grow with the
image size. A constant image scores 0 with every metric.

Phase objects (unstained RBCs in DPC or brightfield) gain low-frequency contrast when
defocused, so only metrics driven by high spatial frequencies find the focal plane: on the
brightfield defocus series in ``shared/data/sephace_brightfield_defocus`` the normalised
variance is *lowest* in focus (see ``benchmarks/focus_qc.py``). The default is the
variance of the Laplacian after a small Gaussian (:data:`DEFAULT_FOCUS_METRIC`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scopeflow.config_schema import schema_defaults

__all__ = [
    "DEFAULT_FOCUS_METRIC",
    "FOCUS_METRICS",
    "brenner",
    "focus_metrics",
    "focus_ratio",
    "laplacian_variance",
    "normalized_variance",
    "tenengrad",
    "tiled_focus_metrics",
]


def _as_float(image) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"focus metrics expect a 2-D (y, x) image, got shape {img.shape}")
    return img


def laplacian_variance(image, sigma: float = 1.0) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al. 2000).

    Parameters
    ----------
    image : array_like, shape (y, x)
    sigma : float
        Gaussian pre-smoothing (px) that suppresses pixel noise; 0 = none.
    """
    from scipy import ndimage as ndi  # imported when used (job start-up)

    img = _as_float(image)
    if img.size == 0 or np.ptp(img) == 0:
        return 0.0
    lap = ndi.gaussian_laplace(img, sigma) if sigma > 0 else ndi.laplace(img)
    return float(np.var(lap))


def tenengrad(image, sigma: float = 0.0) -> float:
    """Tenengrad: mean squared Sobel gradient magnitude, mean(G_y² + G_x²)."""
    from scipy import ndimage as ndi  # imported when used (job start-up)

    img = _as_float(image)
    if img.size == 0 or np.ptp(img) == 0:
        return 0.0
    if sigma > 0:
        img = ndi.gaussian_filter(img, sigma)
    gy = ndi.sobel(img, axis=0)
    gx = ndi.sobel(img, axis=1)
    return float(np.mean(gy * gy + gx * gx))


def brenner(image) -> float:
    """Brenner gradient: mean of squared differences two pixels apart, along x and along y."""
    img = _as_float(image)
    dx = img[:, 2:] - img[:, :-2]
    dy = img[2:, :] - img[:-2, :]
    total = (dx * dx).sum() + (dy * dy).sum()
    n = dx.size + dy.size
    return float(total / n) if n else 0.0


def normalized_variance(image) -> float:
    """Normalised variance var(I) / mean(I) (Groen et al. 1985); NaN when mean(I) <= 0 < var(I)."""
    img = _as_float(image)
    if img.size == 0:
        return 0.0
    var = float(np.var(img))
    mean = float(np.mean(img))
    if var == 0.0:
        return 0.0
    return var / mean if mean > 0 else float("nan")


#: Name -> metric (the names are the FOV table columns ``focus_<name>``).
FOCUS_METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "laplacian_var": laplacian_variance,
    "tenengrad": tenengrad,
    "brenner": brenner,
    "normalized_var": normalized_variance,
}

#: Metric whose ratio to the sample median decides ``focus_pass`` (the default of ``qc.focus_metric``).
DEFAULT_FOCUS_METRIC: str = schema_defaults("qc")["focus_metric"]


def _tile_means(a: np.ndarray, tile: int) -> np.ndarray:
    """Means of ``a`` over non-overlapping ``tile`` x ``tile`` blocks (a remainder strip at
    the bottom / right that does not fill a block is left out)."""
    ny, nx = a.shape[0] // tile, a.shape[1] // tile
    blocks = a[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile)
    return blocks.mean(axis=(1, 3), dtype=np.float64).ravel()


def tiled_focus_metrics(image, tile_px: int = 128, percentile: float = 90.0,
                        names=None, *, compiled: bool = False) -> dict[str, float]:
    """Metrics of :data:`FOCUS_METRICS` per tile, summarised by an upper percentile.

    A whole-image metric falls with the fraction of the image covered by cells, so a
    sparse but sharp field would look blurred. Scoring ``tile_px`` tiles and taking the
    ``percentile`` of the tile scores measures the sharpness of the tiles that hold
    structure (any field with cells in more than ``100 - percentile`` % of its tiles).

    The filtered images are float32 (the tile means accumulate in float64): a 3000² FOV
    needs one float32 image per metric, not several float64 ones.

    Parameters
    ----------
    image : array_like, shape (y, x)
    tile_px : int
        Tile edge (px); clipped to the image size, so an image smaller than a tile is one
        tile (the whole-image metrics).
    percentile : float
        Percentile of the tile scores, in [0, 100].
    names : iterable of str, optional
        The metrics to compute (keys of :data:`FOCUS_METRICS`); default all. The others
        are NaN in the result.
    compiled : bool
        Score ``laplacian_var`` with the compiled one-pass kernel
        (:func:`scopeflow.smear.filters.gaussian_laplace_tile_sums`: the same filtered
        values, no filtered image); for callers that run after the kernels' warm-up
        (:mod:`scopeflow.warmup`), such as the measure stage.

    Returns
    -------
    dict
        ``{"focus_<name>": value}`` for every metric; 0 for a constant image.
    """
    wanted = list(FOCUS_METRICS) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in FOCUS_METRICS]
    if unknown:
        raise ValueError(f"unknown focus metric(s) {unknown}; use {', '.join(FOCUS_METRICS)}")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"focus metrics expect a 2-D (y, x) image, got shape {img.shape}")
    out = {f"focus_{name}": float("nan") for name in FOCUS_METRICS}
    if img.size == 0 or np.ptp(img) == 0:  # exact 0, not the filters' rounding residue
        out.update({f"focus_{name}": 0.0 for name in wanted})
        return out
    t = max(3, min(int(tile_px), img.shape[0], img.shape[1]))

    def tmean(a):
        return _tile_means(a, t)

    scores = {}
    for name in wanted:
        if name == "laplacian_var" and compiled:
            from scopeflow.smear.filters import gaussian_laplace_tile_sums

            s1, s2 = gaussian_laplace_tile_sums(img, 1.0, t)
            m = s1.ravel() / (t * t)
            scores[name] = np.maximum(s2.ravel() / (t * t) - m ** 2, 0.0)
        elif name == "laplacian_var":
            from scipy import ndimage as ndi  # imported when used (job start-up)

            lap = ndi.gaussian_laplace(img, 1.0)
            m = tmean(lap)
            np.multiply(lap, lap, out=lap)
            scores[name] = np.maximum(tmean(lap) - m ** 2, 0.0)
        elif name == "tenengrad":
            from scipy import ndimage as ndi

            g = ndi.sobel(img, axis=0)
            np.multiply(g, g, out=g)
            gx = ndi.sobel(img, axis=1)
            np.multiply(gx, gx, out=gx)
            g += gx
            scores[name] = tmean(g)
        elif name == "brenner":
            d = np.zeros_like(img)
            d[:, :-2] = img[:, 2:] - img[:, :-2]
            np.multiply(d, d, out=d)
            dy = img[2:, :] - img[:-2, :]
            np.multiply(dy, dy, out=dy)
            d[:-2, :] += dy
            scores[name] = tmean(d) * (t * t) / max(t * t - 2 * t, 1)
        else:  # normalized_var
            mean = tmean(img)
            var = np.maximum(tmean(img * img) - mean * mean, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                scores[name] = np.where(var > 0, var / np.where(mean > 0, mean, np.nan), 0.0)
    for name, values in scores.items():
        finite = values[np.isfinite(values)]
        out[f"focus_{name}"] = float(np.percentile(finite, percentile)) if finite.size else float("nan")
    return out


def focus_metrics(image, tile_px: int | None = 128, percentile: float = 90.0,
                  names=None) -> dict[str, float]:
    """:data:`FOCUS_METRICS` of one image, as ``{"focus_<name>": value}``.

    With ``tile_px`` (default) the tiled scores of :func:`tiled_focus_metrics` (what the
    FOV table stores); with None the whole-image metrics. ``names`` limits the metrics
    computed (the others are NaN); default all.
    """
    if tile_px is not None:
        return tiled_focus_metrics(image, tile_px, percentile, names=names)
    img = _as_float(image)
    wanted = set(FOCUS_METRICS if names is None else names)
    return {f"focus_{name}": (float(fn(img)) if name in wanted else float("nan"))
            for name, fn in FOCUS_METRICS.items()}


def focus_ratio(values) -> np.ndarray:
    """Each value divided by the median of the finite values (the sample's FOVs).

    Returns NaN where the value is not finite, and for every value when the median is not
    positive (e.g. every FOV is blank), so that no threshold passes on 0/0.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    med = float(np.median(finite)) if finite.size else np.nan
    if not np.isfinite(med) or med <= 0:
        return np.full(v.shape, np.nan)
    out = v / med
    out[~np.isfinite(v)] = np.nan
    return out
