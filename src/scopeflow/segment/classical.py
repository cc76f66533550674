"""Classical (no-learning) red-blood-cell segmentation of Octopi DPC images.

The DPC image of a thin phase object is, to first order, the derivative of its phase
along the illumination split axis (x for Octopi's left/right LED halves):
``DPC − 0.5 ≈ ±k ∂φ/∂x``. Thresholding the DPC itself therefore finds cell *edges*
(a bipolar relief), not cell bodies, which is why Otsu on DPC fails on this data
(``reference/baselines.md`` §1). This predictor first undoes the derivative locally:

1. ``d = DPC − median`` (median of the whole image, from :meth:`prepare`);
2. *leaky integration* along x: ``p = d ∗ k`` with the antisymmetric kernel
   ``k(s) = ½·sign(s)·exp(−|s|/L)`` truncated at ``|s| ≤ 3L``, which is the exact inverse of
   ``∂/∂x`` for structures much smaller than L and a high-pass for larger ones. ``p`` is a
   phase-like image in which each cell is a positive bump (a ring for biconcave cells);
3. polarity ``±p`` (the sign of the DPC convention; real Octopi data and the scopeflow
   simulator differ) chosen once per image in :meth:`prepare` unless given;
4. Gaussian smoothing (σ) and a white top-hat (grey opening with a square of side
   ``2·background_radius + 1``) that removes the slowly varying background that the
   leaky integration leaves near dense clusters.

The resulting contrast map is thresholded at the Otsu level of the *whole* image
(computed once in :meth:`prepare`, so every tile uses the same level). Small holes (the
central dimples of biconcave cells) are filled and kept as seeds; touching cells are split
by a marker watershed on the smoothed, clipped distance transform with seeds = dimples
plus compact local maxima of the distance. Every step has a bounded spatial reach, so
labels do not depend on how the image is tiled (see :mod:`scopeflow.segment.chunked`).

All lengths are given in micrometres and converted with ``pixel_size_um``. Images are
(y, x) arrays; pixel (0, 0) is the top-left pixel, its centre at coordinate (0, 0).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

__all__ = ["ClassicalPredictor", "leaky_integrate"]

_CROSS = ndi.generate_binary_structure(2, 1)
_SQUARE = ndi.generate_binary_structure(2, 2)


def leaky_integrate(d: np.ndarray, length_px: float, axis: int = 1) -> np.ndarray:
    """Integrate a derivative image along one axis with an exponentially leaking memory.

    Parameters
    ----------
    d : np.ndarray, shape (y, x)
        Derivative-like image with zero background (e.g. DPC − 0.5).
    length_px : float
        Decay length L of the integration, pixels. The kernel is truncated at 3L.
    axis : int
        Axis of the derivative: 1 = x (Octopi left/right halves), 0 = y (top/bottom).

    Returns
    -------
    np.ndarray of float32, same shape
        ``Σ_s k(s)·d(x − s)`` with ``k(s) = ½·sign(s)·exp(−|s|/L)``: for a bump ``φ`` much
        narrower than L with ``d = ∂φ/∂x`` this returns ``φ`` (minus its local mean).
        Borders are reflected.
    """
    half = max(1, int(math.ceil(3.0 * length_px)))
    s = np.arange(-half, half + 1, dtype=np.float64)
    kernel = 0.5 * np.sign(s) * np.exp(-np.abs(s) / length_px)
    return ndi.convolve1d(
        np.asarray(d, np.float32), kernel.astype(np.float32), axis=axis, mode="reflect"
    )


def _fill_small_holes(mask: np.ndarray, max_area: float, max_extent: int) -> np.ndarray:
    """Return the background components (4-connected) with area ≤ max_area px and a
    bounding box no wider or taller than max_extent px, as a boolean image."""
    bg, n = ndi.label(~mask, structure=_CROSS)
    if n == 0:
        return np.zeros_like(mask)
    area = np.bincount(bg.ravel(), minlength=n + 1)
    extent = np.zeros(n + 1, dtype=np.int64)
    for i, sl in enumerate(ndi.find_objects(bg), start=1):
        if sl is not None:
            extent[i] = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
    small = (area <= max_area) & (extent <= max_extent)
    small[0] = False
    return small[bg]


class ClassicalPredictor:
    """Leaky-integration + threshold + distance-watershed RBC segmentation of DPC images.

    Implements the :class:`scopeflow.segment.base.Predictor` protocol.

    Parameters
    ----------
    pixel_size_um : float
        Pixel size at the sample, µm (Octopi 20x: 0.333).
    cell_diameter_um : float
        Typical RBC diameter, µm. Sets every size below (radius R = diameter / 2 in px).
    integration_length_um : float
        Decay length L of the leaky integration along the DPC axis, µm (≈ 2/3 of a cell).
    sigma_um : float
        Gaussian smoothing of the integrated image, µm.
    background_radius_um : float or None
        Half-side of the top-hat square, µm; None = 1.5 R. Must exceed a cell radius.
    axis : int
        DPC derivative axis of the tile: 1 = x (left/right halves), 0 = y.
    polarity : {"auto", 1, -1}
        Sign that makes cells positive after integration. ``"auto"`` picks, in
        :meth:`prepare`, the sign whose thresholded mask has more cell-sized compact
        components. Real Octopi DPC images need -1, the scopeflow simulator +1.
    seed_spacing : float
        Radius of the local-maximum window for distance seeds, in units of R.
    min_area_fraction : float
        Objects smaller than this fraction of the disc area π R² are dropped.
    max_diameter_factor : float
        Largest object extent kept, in cell diameters; sets :attr:`object_size`.
    threshold_factor : float
        Multiplies the whole-image Otsu level of the contrast map (1 = Otsu).

    Attributes
    ----------
    name : str
        ``"classical"``.
    context : int
        Pixels of image a decoded label may depend on beyond an instance, each side:
        reach of the contrast filters plus reach of the decoding (see Notes).
    object_size : int
        Largest instance extent, px (``max_diameter_factor`` cell diameters).
    threshold_ : float
        Otsu level of the whole image's contrast map (set by :meth:`prepare`).
    polarity_ : int
        Polarity used (set by :meth:`prepare`).

    Notes
    -----
    Rationale of the defaults (tuned on the Octopi harness crops and the scopeflow
    simulator, checked not to be sharp optima): L = 5 µm ≈ 15 px integrates across one
    cell without accumulating the illumination drift; σ = 0.33 µm (1 px) suppresses
    shot noise only; the top-hat square of half-side 1.5 R always reaches the gap between
    touching cells; seeds are the filled dimples plus maxima of the distance transform
    (clipped at 1.5 R, smoothed by 1 px) over a window of radius 0.45 R; lowering the
    threshold below Otsu (``threshold_factor`` 0.7 or 0.5) lost F1 on both real and
    simulated data. Objects below 0.3 π R² are fragments; objects wider than 2.5 cell
    diameters are clumps, and dropping them also bounds :attr:`object_size` (57 px at the
    defaults).

    ``context`` counts the reach of the contrast filters (3 L + 4 σ + twice the top-hat
    half-side = 85 px at the defaults) *plus* the reach of :meth:`decode` (hole filling
    2 R, opening, clipped distance 1.5 R and its smoothing, seed window: 52 px), so
    the chunked machinery's halo ``context + object_size`` makes the labels exactly
    independent of the tiling (137 + 57 -> 208 px halo).

    DPC sign: on the real Octopi images the left edge of a cell is *dark*
    (DPC < 0.5, polarity -1), in :func:`scopeflow.simulate.smear.simulate_fov` it is
    bright (polarity +1); ``"auto"`` handles both.

    Inputs are DPC images in [0, 1] float32 (0.5 = no phase gradient); a uint8 DPC must
    be divided by 255 (the method itself is insensitive to a global scale of the DPC).
    The predictor is stateless after :meth:`prepare`, so tiles may run in threads.
    """

    name = "classical"

    def __init__(
        self,
        pixel_size_um: float = 0.333,
        *,
        cell_diameter_um: float = 7.5,
        integration_length_um: float = 5.0,
        sigma_um: float = 0.333,
        background_radius_um: float | None = None,
        axis: int = 1,
        polarity: str | int = "auto",
        seed_spacing: float = 0.45,
        min_area_fraction: float = 0.3,
        max_diameter_factor: float = 2.5,
        threshold_factor: float = 1.0,
    ) -> None:
        if not pixel_size_um > 0:
            raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um}")
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (y) or 1 (x), got {axis}")
        if polarity not in ("auto", 1, -1):
            raise ValueError(f"polarity must be 'auto', 1 or -1, got {polarity!r}")
        px = float(pixel_size_um)
        self.pixel_size_um = px
        self.cell_diameter_um = float(cell_diameter_um)
        self.axis = axis
        self.polarity = polarity
        self.threshold_factor = float(threshold_factor)
        self.radius_px = 0.5 * cell_diameter_um / px
        r = self.radius_px
        self.length_px = integration_length_um / px
        self.sigma_px = sigma_um / px
        bg = 1.5 * r if background_radius_um is None else background_radius_um / px
        self.background_half = max(1, int(round(bg)))
        self.seed_radius = max(1, int(round(seed_spacing * r)))
        self.min_area = min_area_fraction * math.pi * r * r
        self.hole_area = math.pi * r * r
        self.hole_extent = int(math.ceil(2 * r))
        self.dist_clip = 1.5 * r
        self.dist_sigma = 1.0
        self.peak_min = 0.35 * r
        self.dimple_exclusion = 0.5 * r
        self.object_size = int(math.ceil(max_diameter_factor * cell_diameter_um / px))
        # Reach of predict(): integration kernel + Gaussian (4 σ) + opening (2 half-sides).
        map_reach = (
            int(math.ceil(3 * self.length_px))
            + int(math.ceil(4 * self.sigma_px))
            + 2 * self.background_half
        )
        # Reach of decode() around a pixel: hole filling + opening + clipped distance +
        # its smoothing + the seed window / dimple exclusion.
        decode_reach = (
            self.hole_extent
            + 2
            + int(math.ceil(self.dist_clip))
            + 1
            + int(math.ceil(4 * self.dist_sigma))
            + max(self.seed_radius, int(math.ceil(self.dimple_exclusion)))
        )
        self.context = map_reach + decode_reach
        self.median_: float | None = None
        self.threshold_: float | None = None
        self.polarity_: int | None = None if polarity == "auto" else int(polarity)

    def __repr__(self) -> str:
        return (
            f"ClassicalPredictor(pixel_size_um={self.pixel_size_um}, "
            f"cell_diameter_um={self.cell_diameter_um}, polarity={self.polarity!r})"
        )

    # -- protocol -------------------------------------------------------------------------
    def _integrated(self, tile: np.ndarray, median: float) -> np.ndarray:
        """Smoothed leaky integral of ``tile - median`` along the DPC axis (polarity +1)."""
        d = np.asarray(tile, np.float32) - np.float32(median)
        p = leaky_integrate(d, self.length_px, axis=self.axis)
        if self.sigma_px > 0:
            p = ndi.gaussian_filter(p, self.sigma_px, truncate=4.0, mode="reflect")
        return p

    def _tophat(self, p: np.ndarray, polarity: int) -> np.ndarray:
        """White top-hat of ``polarity * p`` (square of side 2·background_half + 1)."""
        if polarity < 0:
            p = -p
        k = 2 * self.background_half + 1
        return (p - ndi.grey_opening(p, size=(k, k), mode="reflect")).astype(np.float32)

    def _contrast(self, tile: np.ndarray, median: float, polarity: int) -> np.ndarray:
        return self._tophat(self._integrated(tile, median), polarity)

    def prepare(self, image: np.ndarray) -> None:
        """Compute the global median, polarity and Otsu threshold of one image.

        Parameters
        ----------
        image : np.ndarray, shape (y, x)
            The whole field of view (DPC, [0, 1]); must not be a single tile of it.
        """
        img = np.asarray(image, np.float32)
        if img.ndim != 2:
            raise ValueError(f"ClassicalPredictor.prepare expects a 2-D image, got {img.shape}")
        self.median_ = float(np.median(img))
        p = self._integrated(img, self.median_)
        if self.polarity == "auto":
            # Decide on the central crop of at most 1024² px (enough cells, bounded cost).
            h, w = p.shape
            cy, cx = max(0, (h - 1024) // 2), max(0, (w - 1024) // 2)
            crop = p[cy : cy + 1024, cx : cx + 1024]
            plus = self._cell_likeness(self._tophat(crop, 1))
            minus = self._cell_likeness(self._tophat(crop, -1))
            self.polarity_ = 1 if plus >= minus else -1
        self.threshold_ = self.threshold_factor * _otsu(self._tophat(p, self.polarity_))

    def _cell_likeness(self, c: np.ndarray) -> float:
        """Fraction of the image covered by cell-sized, compact mask components."""
        mask = c > _otsu(c)
        mask |= _fill_small_holes(mask, self.hole_area, self.hole_extent)
        lab, n = ndi.label(mask, structure=_CROSS)
        if n == 0:
            return 0.0
        area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        box = np.ones(n + 1)
        for i, sl in enumerate(ndi.find_objects(lab), start=1):
            if sl is not None:
                box[i] = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
        disc = math.pi * self.radius_px**2
        good = (area >= 0.3 * disc) & (area <= 3.0 * disc) & (area / box >= 0.6)
        good[0] = False
        return float(area[good].sum() / mask.size)

    def predict(self, tile: np.ndarray) -> np.ndarray:
        """Return the cell-body contrast map, float32 (1, h, w), for a DPC tile."""
        if self.threshold_ is None:
            raise RuntimeError("ClassicalPredictor.prepare(image) must be called before predict")
        tile = np.asarray(tile, np.float32)
        if tile.ndim != 2:
            raise ValueError(f"predict expects a 2-D tile, got shape {tile.shape}")
        return self._contrast(tile, self.median_, self.polarity_)[None]

    def decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Threshold, fill dimples and split touching cells by a seeded watershed.

        Parameters
        ----------
        maps : np.ndarray, shape (1, h, w)
            Output of :meth:`predict`.

        Returns
        -------
        labels, seeds : np.ndarray of int32, shape (h, w)
            Instances (0 = background, ids 1..n in raster order of the seeds) and their
            seed regions (same ids).
        """
        if self.threshold_ is None:
            raise RuntimeError("ClassicalPredictor.prepare(image) must be called before decode")
        c = np.asarray(maps)[0]
        r = self.radius_px
        raw = c > self.threshold_
        holes = _fill_small_holes(raw, self.hole_area, self.hole_extent)
        mask = ndi.binary_opening(raw | holes, structure=_CROSS)
        # Dimples: filled holes of a plausible size; each one seeds its own cell.
        hl, nh = ndi.label(holes, structure=_CROSS)
        if nh:
            ha = np.bincount(hl.ravel(), minlength=nh + 1)
            ok = (ha >= 3) & (ha <= 0.5 * math.pi * r * r)
            ok[0] = False
            dimples = ok[hl]
        else:
            dimples = np.zeros_like(raw)
        mask |= dimples
        dist = np.minimum(ndi.distance_transform_edt(mask), self.dist_clip)
        dist = ndi.gaussian_filter(dist, self.dist_sigma, truncate=4.0, mode="reflect")
        size = 2 * self.seed_radius + 1
        peaks = (
            (dist >= ndi.maximum_filter(dist, size=size, mode="reflect"))
            & (dist > self.peak_min)
            & mask
        )
        if dimples.any():
            # No distance seeds in the square of half-side dimple_exclusion around a dimple.
            k = 2 * int(math.ceil(self.dimple_exclusion)) + 1
            peaks &= ~ndi.maximum_filter(dimples, size=k, mode="constant", cval=False)
        seeds, n_seeds = ndi.label(peaks | dimples, structure=_SQUARE)
        if n_seeds == 0:
            empty = np.zeros(c.shape, dtype=np.int32)
            return empty, empty.copy()
        labels = watershed(-dist, seeds, mask=mask)
        # Drop fragments and implausibly large objects (and their seeds).
        n = int(labels.max())
        if n:
            area = np.bincount(labels.ravel(), minlength=n + 1)
            extent = np.zeros(n + 1, dtype=np.int64)
            for i, sl in enumerate(ndi.find_objects(labels), start=1):
                if sl is not None:
                    extent[i] = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
            drop = (area < self.min_area) | (extent > self.object_size)
            drop[0] = False
            if drop.any():
                keep = np.where(drop, 0, np.arange(n + 1))
                labels = keep[labels]
                seeds = keep[seeds]
        return labels.astype(np.int32, copy=False), seeds.astype(np.int32, copy=False)


def _otsu(c: np.ndarray) -> float:
    """Otsu threshold, or +inf for a constant image (nothing is foreground)."""
    c = np.asarray(c)
    lo, hi = float(c.min()), float(c.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return float("inf")
    return float(threshold_otsu(c))
