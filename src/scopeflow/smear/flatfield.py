"""Flatfield estimation and intensity normalization.

All functions take and return (y, x) arrays; outputs are float32.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "FlatfieldRows",
    "apply_flatfield",
    "bin_image",
    "coarse_flatfield",
    "estimate_flatfield",
    "expand_flatfield",
    "flatfield_bin_factor",
    "flatfield_mean",
    "gaussian_reflect",
    "image_stats",
    "percentile_normalize",
    "zscore",
]


def _block_sums(a: np.ndarray, f: int, axis: int, acc) -> np.ndarray:
    """Sums over runs of ``f`` along ``axis`` (0 or 1) of a 2-D array, accumulated in ``acc``; a
    last partial run adds its final line ``f − r`` more times (as edge padding would)."""
    n = a.shape[axis]
    k, r = divmod(n, f)
    if axis == 0:
        full = a[: k * f].reshape(k, f, a.shape[1]).sum(axis=1, dtype=acc)
        if r:
            rest = a[k * f :].sum(axis=0, dtype=acc) + (f - r) * a[-1].astype(acc)
            full = np.concatenate([full, rest[None]], axis=0)
        return full
    full = a[:, : k * f].reshape(a.shape[0], k, f).sum(axis=2, dtype=acc)
    if r:
        rest = a[:, k * f :].sum(axis=1, dtype=acc) + (f - r) * a[:, -1].astype(acc)
        full = np.concatenate([full, rest[:, None]], axis=1)
    return full


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean (float64) over f×f blocks; edges that do not fill a block are averaged as partial
    blocks with their last row/column repeated (edge padding), without a padded copy.

    Integer images are summed exactly (the narrowest unsigned accumulator that cannot overflow
    for the rows, int64 for the small column pass), others in float64: one pass over the image
    and no full-size temporary.
    """
    a = np.asarray(img)
    if a.dtype == bool or np.issubdtype(a.dtype, np.unsignedinteger):
        top = 1 if a.dtype == bool else int(np.iinfo(a.dtype).max)
        acc = next(t for t in (np.uint16, np.uint32, np.int64) if top * f <= np.iinfo(t).max)
        sums = _block_sums(_block_sums(a, f, 0, acc).astype(np.int64), f, 1, np.int64)
    else:
        exact = np.issubdtype(a.dtype, np.integer)
        acc = np.int64 if exact else np.float64
        sums = _block_sums(_block_sums(a, f, 0, acc), f, 1, acc)
    return sums / float(f * f)


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing without border bias for sloped backgrounds.

    A least-squares quadratic surface is fitted first and only the residual is smoothed
    (mirror borders), so a vignetting falloff that is still steep at the image border is
    not flattened there.
    """
    ny, nx = img.shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    basis = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * xx, yy * xx], axis=-1)
    coef, *_ = np.linalg.lstsq(basis.reshape(-1, 6), img.ravel(), rcond=None)
    surface = basis @ coef
    return surface + gaussian_reflect(img - surface, sigma)


def gaussian_reflect(img: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing (float64) of a small 2-D image, borders mirrored (``d c b a | a b c d``).

    The values of ``scipy.ndimage.gaussian_filter(img, sigma, mode="reflect")`` (kernel
    radius ``int(truncate·sigma + 0.5)``, one axis after the other) to float64 rounding, in
    numpy: the binned flatfields are ~128² px, and an ingest job does not import
    ``scipy.ndimage`` (~0.3 s) for them.
    """
    out = np.asarray(img, dtype=np.float64)
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return out.copy()
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / float(sigma) ** 2 * x * x)
    w /= w.sum()
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        windows = np.lib.stride_tricks.sliding_window_view(padded, w.size, axis=axis)
        out = windows @ w
    return out


def flatfield_bin_factor(shape: tuple[int, int]) -> int:
    """Default binning of :func:`estimate_flatfield`: the binned image is ≈128 px."""
    return max(1, max(int(shape[0]), int(shape[1])) // 128)


def bin_image(img: np.ndarray, bin_factor: int, scale: float = 1.0) -> np.ndarray:
    """Block mean over ``bin_factor`` × ``bin_factor`` pixels divided by ``scale`` (float32),
    the first step of :func:`estimate_flatfield` (only these binned copies of each FOV are kept).

    Integer images are binned as stored (exact sums; no float copy of the image): pass
    ``scale`` = :func:`scopeflow.io.images.unit_scale` for the mean of the [0, 1] image.
    """
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"estimate_flatfield: expected 2-D images, got shape {a.shape}")
    return (_block_mean(a, int(bin_factor)) / float(scale)).astype(np.float32)


def coarse_flatfield(
    binned: list[np.ndarray], shape: tuple[int, int], bin_factor: int, sigma: float | None = None
) -> np.ndarray:
    """The smoothed median of binned FOVs: a flatfield at the binned resolution.

    Parameters
    ----------
    binned : list of numpy.ndarray
        :func:`bin_image` of each FOV (all the same shape).
    shape : (int, int)
        Full-resolution image shape (y, x).
    bin_factor : int
        Binning used.
    sigma : float, optional
        Gaussian smoothing sigma in full-resolution pixels; default 1/16 of the larger side.

    Returns
    -------
    numpy.ndarray
        float64 (ceil(ny / f), ceil(nx / f)); :func:`expand_flatfield` brings it to
        full resolution, mean 1.
    """
    if not binned:
        raise ValueError("estimate_flatfield: no images given")
    stack = np.stack(binned)
    med = np.median(stack, axis=0) if len(binned) > 1 else stack[0]
    if sigma is None:
        sigma = max(shape) / 16.0
    return _smooth(med.astype(np.float64), sigma / bin_factor)


def _weights(n: int, size: int, f: int):
    """Linear interpolation at (i − (f − 1)/2)/f, edges extended (mode "nearest"): for each
    of ``n`` output positions the two coarse indices and the weight of the second."""
    c = np.clip((np.arange(n) - (f - 1) / 2.0) / f, 0, size - 1)
    i0 = np.minimum(np.floor(c).astype(np.intp), max(size - 2, 0))
    return i0, np.minimum(i0 + 1, size - 1), c - i0


class _Expansion:
    """The bilinear upsampling of a coarse flatfield, computed for any block of rows (float64).

    Separable: along x once for every coarse row, then along y per block of output rows; a
    row's values do not depend on the block it is computed in.
    """

    def __init__(self, coarse: np.ndarray, shape: tuple[int, int], bin_factor: int):
        self.shape = (int(shape[0]), int(shape[1]))
        f = int(bin_factor)
        small = np.asarray(coarse, dtype=np.float64)
        x0, x1, wx = _weights(self.shape[1], small.shape[1], f)
        self.along_x = small[:, x0] * (1 - wx) + small[:, x1] * wx
        self.y0, self.y1, self.wy = _weights(self.shape[0], small.shape[0], f)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        w = self.wy[r0:r1, None]
        return self.along_x[self.y0[r0:r1]] * (1 - w) + self.along_x[self.y1[r0:r1]] * w

    def mean(self) -> float:
        """Mean of the whole upsampling: each coarse row's weight summed over the output rows
        (no full-size array)."""
        ny = self.shape[0]
        row_weight = np.bincount(self.y0, 1 - self.wy, minlength=len(self.along_x))
        row_weight += np.bincount(self.y1, self.wy, minlength=len(self.along_x))
        n = ny * self.shape[1]
        return float(row_weight @ self.along_x.sum(axis=1)) / n if n else float("nan")


def flatfield_mean(coarse: np.ndarray, shape: tuple[int, int], bin_factor: int) -> float:
    """Mean of the full-resolution upsampling of a coarse flatfield (before normalisation).

    Raises
    ------
    ValueError
        When it is not positive (images without signal).
    """
    mean = _Expansion(coarse, shape, bin_factor).mean()
    if not np.isfinite(mean) or mean <= 0:
        raise ValueError("estimate_flatfield: images have no positive signal")
    return mean


class FlatfieldRows:
    """A full-resolution flatfield (float32, mean 1, at least ``floor``) from
    :func:`coarse_flatfield`, computed for the rows asked for: a job applies it block by block
    without holding the full-size array.

    ``FlatfieldRows(coarse, shape, f)[r0:r1]`` equals ``expand_flatfield(coarse, shape, f)[r0:r1]``.
    """

    def __init__(self, coarse: np.ndarray, shape: tuple[int, int], bin_factor: int,
                 floor: float = 1e-3):
        self._exp = _Expansion(coarse, shape, bin_factor)
        self.divisor = flatfield_mean(coarse, shape, bin_factor)  # normalises to mean 1
        self.shape = self._exp.shape
        self.floor = float(floor)

    def __getitem__(self, rows: slice) -> np.ndarray:
        r0, r1, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("FlatfieldRows: only contiguous row slices")
        b = self._exp.rows(r0, r1)
        b /= self.divisor
        np.maximum(b, self.floor, out=b)
        return b.astype(np.float32)


def expand_flatfield(coarse: np.ndarray, shape: tuple[int, int], bin_factor: int,
                     floor: float = 1e-3, rows: int = 512) -> np.ndarray:
    """Full-resolution flatfield (float32, mean 1, at least ``floor``) from :func:`coarse_flatfield`.

    Bilinear interpolation (separable: along x for each coarse row, then along y), bin
    centres at ``(f − 1)/2 + f·n`` in full-resolution pixel coordinates, edges extended (as
    ``scipy.ndimage.map_coordinates(order=1, mode="nearest")``, to float64 rounding);
    computed in blocks of ``rows`` rows (:class:`FlatfieldRows`), so no full-size float64
    array is made (4 bytes per pixel in all).
    """
    ff = FlatfieldRows(coarse, shape, bin_factor, floor)
    out = np.empty(ff.shape, np.float32)
    for r0 in range(0, ff.shape[0], rows):
        out[r0 : r0 + rows] = ff[r0 : r0 + rows]
    return out


def estimate_flatfield(
    images: Iterable[np.ndarray],
    sigma: float | None = None,
    bin_factor: int | None = None,
) -> np.ndarray:
    """Estimate a smooth multiplicative flatfield from the FOVs of one channel.

    The images are block-averaged (binned, :func:`bin_image`), the per-pixel median over
    FOVs is taken (a single FOV is used as is), the result is smoothed (a least-squares
    quadratic surface plus the Gaussian-smoothed residual, which avoids border bias;
    :func:`coarse_flatfield`), upsampled back to the image shape and normalized to mean 1
    (:func:`expand_flatfield`). Cells are averaged out by the median over FOVs and
    by the smoothing (DPC half-illumination images of unstained cells have nearly background
    mean intensity).

    Parameters
    ----------
    images : iterable of numpy.ndarray
        2-D images (y, x) of one illumination channel, all of the same shape; a generator is
        fine (only binned copies are kept).
    sigma : float, optional
        Gaussian smoothing sigma in full-resolution pixels; default 1/16 of the larger image
        side (64 px for 1024²).
    bin_factor : int, optional
        Binning before the median/smoothing; default so that the binned image is ≈128 px.

    Returns
    -------
    numpy.ndarray
        float32 flatfield (y, x), mean 1, strictly positive.

    Raises
    ------
    ValueError
        No images, images that are not 2-D, or images of different shapes.
    """
    binned = []
    shape = None
    f = bin_factor
    for img in images:
        a = np.asarray(img)
        if a.ndim != 2:
            raise ValueError(f"estimate_flatfield: expected 2-D images, got shape {a.shape}")
        if shape is None:
            shape = a.shape
            if f is None:
                f = flatfield_bin_factor(shape)
        elif a.shape != shape:
            raise ValueError(f"estimate_flatfield: image shapes differ: {shape} vs {a.shape}")
        binned.append(bin_image(a, f))
    if shape is None:
        raise ValueError("estimate_flatfield: no images given")
    return expand_flatfield(coarse_flatfield(binned, shape, f, sigma), shape, f)


def apply_flatfield(img: np.ndarray, ff: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Divide an image by a flatfield: ``img / max(ff, eps)`` (float32).

    Parameters
    ----------
    img : numpy.ndarray
        Image (y, x); integer images are *not* rescaled (use them as float counts).
    ff : numpy.ndarray
        Flatfield of the same shape (mean ≈ 1).
    eps : float
        Lower bound of the flatfield to avoid division by zero.
    """
    img = np.asarray(img, dtype=np.float32)
    ff = np.asarray(ff, dtype=np.float32)
    if img.shape != ff.shape:
        raise ValueError(f"apply_flatfield: image {img.shape} and flatfield {ff.shape} differ")
    return img / np.maximum(ff, np.float32(eps))


def image_stats(img: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite pixels (float64 accumulation)."""
    a = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = a[finite]
    if a.size == 0:
        return 0.0, 0.0
    return float(a.mean()), float(a.std())


def zscore(img: np.ndarray, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """``(img − mean) / std`` as float32; statistics from the image when not given.

    A zero (or non-finite) std gives ``img − mean`` (all zeros for a constant image) instead
    of dividing by zero.
    """
    a = np.asarray(img, dtype=np.float32)
    if mean is None or std is None:
        m, s = image_stats(a)
        mean = m if mean is None else mean
        std = s if std is None else std
    out = a - np.float32(mean)
    if std and np.isfinite(std) and std > 0:
        out /= np.float32(std)
    return out


def percentile_normalize(
    img: np.ndarray, lo: float = 1.0, hi: float = 99.8, clip: bool = False
) -> np.ndarray:
    """Map the ``lo`` and ``hi`` percentiles to 0 and 1 (float32).

    Parameters
    ----------
    img : numpy.ndarray
        Image.
    lo, hi : float
        Percentiles in [0, 100].
    clip : bool
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32; a constant image maps to zeros.
    """
    a = np.asarray(img, dtype=np.float32)
    p_lo, p_hi = np.nanpercentile(a, [lo, hi]) if a.size else (0.0, 1.0)
    span = float(p_hi - p_lo)
    out = a - np.float32(p_lo)
    if span > 0 and np.isfinite(span):
        out /= np.float32(span)
    else:
        out[...] = 0.0
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out
