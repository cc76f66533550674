"""Spot candidates in a 405 nm fluorescence image and the 31×31 crops around them.

Octopi's malaria pipeline (octopi-malaria-processing, see reference/algorithms.md §2) removes
the background with a white top-hat, finds spots with a scale-normalised multi-scale Laplacian
of Gaussian and local maxima, and cuts 31×31 patches of fluorescence R, G, B + DPC around them
for a CNN. Here the same steps run with sizes given in micrometres, at full resolution or
(``downsample`` = d > 1) on the d × d block mean of the image, the spot then placed on the
brightest full-resolution pixel of its block (Octopi: top-hat at full resolution, LoG on a 4×
downsampled image):

1. ``flatfield`` (optional, per channel) divides the image; ``downsample`` block-means it;
2. background removal: white top-hat per colour channel with a square structuring element
   (``background_um`` wide, default 5.7 µm ≈ Octopi's 17 px at 0.333 µm/px; larger than a
   ring-stage parasite, smaller than a red cell's autofluorescent disc);
3. grey = 0.299 R + 0.587 G + 0.114 B of the background-removed image (mono images: itself);
4. response = max over σ in ``sigmas_um`` of −σ²·LoG(grey) (σ in px), the parasite scale
   (a ring of 2–3 µm diameter responds most near σ ≈ 1 µm, at its centre; Octopi's
   σ of 1–2.5 px on a 4× downsampled image are 1.3–3.3 µm at 0.333 µm/px);
5. candidates = pixels that are the maximum of the response in a (2·r+1)² window
   (r = ``min_distance_um``) and whose response is at least ``threshold`` (grey units,
   full scale = 1).

Conventions: arrays (y, x); positions in pixels with the origin at the centre of pixel (0, 0);
intensities as fractions of the image's full scale (uint8: /255, uint16: /65535).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from scopeflow.parasites.classifier import CROP_PX

__all__ = [
    "GRAY_WEIGHTS",
    "crop_spots",
    "detect_spots",
    "fluorescence_to_float",
    "remove_background",
    "spot_response",
]

#: RGB → grey weights (ITU-R 601, as Octopi's spot detection uses).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def fluorescence_to_float(image: np.ndarray) -> np.ndarray:
    """A fluorescence frame as float32 (y, x, 3) in [0, 1].

    Parameters
    ----------
    image : numpy.ndarray
        (y, x) mono or (y, x, 3|4) colour (RGBA: alpha dropped), uint8 (/255), uint16 (/65535)
        or float (taken as already in [0, 1]). A mono image is repeated into three channels.

    Returns
    -------
    numpy.ndarray
        float32 (y, x, 3).
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"fluorescence image must be (y, x) or (y, x, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    else:
        f = a.astype(np.float32)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    return f


def _block_mean(img: np.ndarray, d: int) -> np.ndarray:
    """Mean over d × d blocks of a (y, x, C) image (a partial last block is dropped)."""
    ny, nx = (img.shape[0] // d) * d, (img.shape[1] // d) * d
    a = np.asarray(img[:ny, :nx], np.float32)
    return a.reshape(ny // d, d, nx // d, d, a.shape[2]).mean(axis=(1, 3))


def remove_background(fluor: np.ndarray, size_px: int) -> np.ndarray:
    """White top-hat (image minus its grey opening) of each channel with a square element.

    Parameters
    ----------
    fluor : numpy.ndarray
        float (y, x, C) image.
    size_px : int
        Edge of the square structuring element in pixels (odd is centred).

    Returns
    -------
    numpy.ndarray
        float32 (y, x, C), ≥ 0.
    """
    f = np.asarray(fluor, np.float32)
    size = max(int(size_px), 1)
    out = np.empty_like(f)
    for c in range(f.shape[2]):
        out[..., c] = f[..., c] - ndi.grey_opening(f[..., c], size=(size, size))
    return out


def spot_response(gray: np.ndarray, sigmas_px: tuple[float, ...]) -> np.ndarray:
    """Maximum over scales of the scale-normalised negative LoG, −σ²·∇²G_σ * gray."""
    g = np.asarray(gray, np.float32)
    resp = np.full(g.shape, -np.inf, np.float32)
    for s in sigmas_px:
        r = -(float(s) ** 2) * ndi.gaussian_laplace(g, float(s))
        np.maximum(resp, r, out=resp)
    return resp


def detect_spots(
    fluorescence: np.ndarray,
    pixel_size_um: float,
    *,
    flatfield: np.ndarray | None = None,
    background_um: float = 5.7,
    sigmas_um: tuple[float, ...] = (0.7, 1.0, 1.4),
    min_distance_um: float = 2.0,
    threshold: float = 0.02,
    labels: np.ndarray | None = None,
    border_px: int = 0,
    downsample: int = 1,
) -> pd.DataFrame:
    """Spot candidates of one FOV's fluorescence image.

    Parameters
    ----------
    fluorescence : numpy.ndarray
        (y, x) or (y, x, 3) fluorescence frame (see :func:`fluorescence_to_float`).
    pixel_size_um : float
        Pixel size at the sample (µm).
    flatfield : numpy.ndarray, optional
        (y, x) or (y, x, 3) flatfield (mean 1) the image is divided by.
    background_um : float
        Width of the top-hat's structuring element (µm).
    sigmas_um : tuple of float
        LoG scales (µm).
    min_distance_um : float
        Half-width of the local-maximum window (µm).
    threshold : float
        Lowest LoG response of a candidate (grey units, full scale 1).
    labels : numpy.ndarray, optional
        (y, x) cell instance labels: each spot gets the id of the cell under it (0: none).
    border_px : int
        Spots closer than this to the image edge are dropped.
    downsample : int
        Block-mean the (flatfield-corrected) frame by this factor before background removal,
        LoG and local maxima (as Octopi detects on a 4× downsampled image; about
        ``downsample²`` times less work); each spot then moves to the brightest full-resolution
        pixel of its block. 1 = full resolution.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, strongest first: ``y``, ``x`` (px), ``response`` (LoG),
        ``intensity`` (background-removed grey at the spot, full scale 1), ``r``, ``g``,
        ``b`` (background-removed channel values at the spot), ``peak_raw`` (brightest raw
        channel value, full scale 1), ``saturated`` (a raw channel ≥ 0.999 within 2 px),
        ``cell_id`` (0 without labels or outside cells). Positions are full-resolution pixels;
        with ``downsample`` > 1, ``response``, ``intensity``, ``r``, ``g``, ``b`` are those of the
        downsampled image.
    """
    f = fluorescence_to_float(fluorescence)
    if flatfield is not None:
        ff = np.asarray(flatfield, np.float32)
        if ff.ndim == 2:
            ff = ff[:, :, None]
        f = f / np.maximum(ff, 1e-3)
    d = max(int(downsample), 1)
    work = _block_mean(f, d) if d > 1 else f
    ps = float(pixel_size_um) * d
    bg = remove_background(work, int(round(background_um / ps)) | 1)
    gray = bg @ np.asarray(GRAY_WEIGHTS, np.float32)
    resp = spot_response(gray, tuple(s / ps for s in sigmas_um))
    w = 2 * max(int(round(min_distance_um / ps)), 1) + 1
    peaks = (resp == ndi.maximum_filter(resp, size=w)) & (resp >= threshold)
    py, px = np.nonzero(peaks)
    rawmax = f.max(axis=2)
    if d > 1:  # the brightest full-resolution pixel of each block
        lum = f @ np.asarray(GRAY_WEIGHTS, np.float32)
        k = np.array([int(lum[y * d : (y + 1) * d, x * d : (x + 1) * d].argmax())
                      for y, x in zip(py, px, strict=True)], np.int64)
        yy, xx = py * d + k // d, px * d + k % d
    else:
        yy, xx = py, px
    keep = np.ones(yy.size, bool)
    if border_px > 0:
        b = int(border_px)
        ny, nx = f.shape[:2]
        keep = (yy >= b) & (yy < ny - b) & (xx >= b) & (xx < nx - b)
    yy, xx, py, px = yy[keep], xx[keep], py[keep], px[keep]
    sat = np.array([rawmax[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].max() >= 0.999
                    for y, x in zip(yy, xx, strict=True)], bool)
    df = pd.DataFrame({
        "y": yy.astype(np.int64), "x": xx.astype(np.int64),
        "response": resp[py, px].astype(np.float64),
        "intensity": gray[py, px].astype(np.float64),
        "r": bg[py, px, 0].astype(np.float64), "g": bg[py, px, 1].astype(np.float64),
        "b": bg[py, px, 2].astype(np.float64),
        "peak_raw": rawmax[yy, xx].astype(np.float64),
        "saturated": sat,
        "cell_id": (np.asarray(labels)[yy, xx].astype(np.int64) if labels is not None
                    else np.zeros(yy.size, np.int64)),
    })
    return df.sort_values("response", ascending=False, kind="stable").reset_index(drop=True)


def crop_spots(
    fluorescence: np.ndarray,
    dpc: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    size: int = CROP_PX,
) -> np.ndarray:
    """4-channel uint8 crops (fluorescence R, G, B, DPC) centred on spots, Octopi's layout.

    Parameters
    ----------
    fluorescence : numpy.ndarray
        Raw (not background-removed) fluorescence frame, (y, x) or (y, x, 3), see
        :func:`fluorescence_to_float`; scaled to 0–255.
    dpc : numpy.ndarray
        DPC image (y, x), float with 0.5 = no gradient (Octopi ``0.5 + (L − R)/(L + R)``),
        scaled by 255 and clipped to 0–255.
    y, x : numpy.ndarray
        Integer spot positions (px).
    size : int
        Crop edge (odd; the spot is the centre pixel).

    Returns
    -------
    numpy.ndarray
        uint8 (N, 4, size, size). Pixels outside the image are 0 in every channel (as in
        Octopi's spot crops, which the classifier was trained on).
    """
    f = fluorescence_to_float(fluorescence)
    d = np.asarray(dpc, np.float32)
    if d.shape != f.shape[:2]:
        raise ValueError(f"dpc shape {d.shape} differs from the fluorescence image {f.shape[:2]}")
    stack = np.concatenate([f, d[:, :, None]], axis=2)
    stack = np.clip(np.rint(np.nan_to_num(stack) * 255.0), 0, 255).astype(np.uint8)
    h = size // 2
    pad = np.pad(stack, ((h, h), (h, h), (0, 0)))
    yy = np.asarray(y, np.int64).ravel()
    xx = np.asarray(x, np.int64).ravel()
    out = np.empty((yy.size, 4, size, size), np.uint8)
    for n, (cy, cx) in enumerate(zip(yy, xx, strict=True)):
        out[n] = pad[cy : cy + size, cx : cx + size].transpose(2, 0, 1)
    return out
