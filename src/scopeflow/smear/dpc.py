"""Differential phase contrast (DPC) and quantitative phase from Octopi left/right images.

Conventions
-----------
* Images are 2-D arrays indexed (y, x); the origin is the centre of pixel (0, 0).
* Spatial frequencies follow :func:`numpy.fft.fftfreq` (cycles/µm), with the forward transform
  ``F(u) = sum f(r) exp(-2πi u·r)`` (numpy's sign). Transfer functions are returned in the
  same unshifted ("FFT") order as :func:`numpy.fft.fft2` output.
* **Left half** means the illumination (source) points with normalized pupil coordinate
  ``f_x > 0`` in this frame, i.e. an illumination plane wave ``exp(2πi s·r)`` with ``s_x > 0``;
  the right half is ``s_x < 0``. The source points exactly on ``f_x = 0`` are shared equally.
  This is the orientation of real Octopi data (../shared/data/octopi_rbc_dpc_*): a cell's left
  edge is dark (DPC < 0.5) and its right edge bright, and the reconstructed phase of cells is
  positive. A microscope that mirrors the image relative to the LED matrix gives negative
  cell phase: swap left and right for it.
* Phase is in radians; pixel sizes and wavelengths in µm.

The weak-object model (Tian & Waller 2015) for one illumination half ``S`` and a pupil ``P``
gives, to first order in the phase φ and absorption μ of a transmission ``exp(iφ − μ)``,

    Î(u)/I0 = δ(u) + H_u(u) μ̂(u) + H_p(u) φ̂(u),
    A(u) = Σ_s S(s) P(s) P(s+u) / Σ_s S(s) |P(s)|²,
    H_p(u) = i [A(u) − A(−u)],   H_u(u) = −[A(u) + A(−u)].

For complementary halves ``H_p,right = −H_p,left`` and ``H_u,right = H_u,left``, so
``(L − R)/(L + R) = DPC − 0.5 ≈ IFFT(H_p,left · φ̂)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from scopeflow.io.images import to_unit_float, unit_scale

__all__ = [
    "dpc_octopi",
    "dpc_to_uint8",
    "phase_filter",
    "phase_from_dpc",
    "phase_transfer_function",
    "weak_object_transfer_functions",
]

# normalized frequency table (units of NA/λ): spacing 1/_TABLE_RES, size _TABLE_N (covers ±2.56)
_TABLE_RES = 100
_TABLE_N = 512


def dpc_octopi(
    left: np.ndarray,
    right: np.ndarray,
    ff_left=None,
    ff_right=None,
    rows: int = 256,
) -> np.ndarray:
    """DPC image exactly as Octopi's ``generate_dpc``: ``0.5 + (L − R)/(L + R)``.

    Parameters
    ----------
    left, right : numpy.ndarray
        Left-half and right-half illumination images, (y, x), in [0, 1] (float). uint8 and
        uint16 inputs are scaled by 1/255 and 1/65535 first.
    ff_left, ff_right : numpy.ndarray or scopeflow.smear.flatfield.FlatfieldRows, optional
        Flatfields (mean ≈ 1) of each channel, anything sliced by rows ``ff[r0:r1]`` (an
        array, or the coarse flatfield expanded block by block); the images are divided by
        them before the DPC formula (as in octopi-malaria-processing).
    rows : int
        Rows computed at a time: only the float32 result is image-sized (4 bytes per pixel;
        the values do not depend on it).

    Returns
    -------
    numpy.ndarray
        float32 DPC in [0, 1]; 0.5 means no phase gradient. Values are clipped to [0, 1] and
        NaN (L = R = 0) is set to 0.

    Notes
    -----
    Octopi stores the 8-bit DPC as ``(dpc * 255).astype(np.uint8)``, i.e. *truncated*
    towards zero; :func:`dpc_to_uint8` reproduces that (rounding instead differs by at most
    1 grey level).
    """
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape:
        raise ValueError(f"left and right images differ in shape: {left.shape} vs {right.shape}")
    # the scale of "other" integer types depends on the whole image: found once here
    scale_l, scale_r = np.float32(unit_scale(left)), np.float32(unit_scale(right))
    out = np.empty(left.shape, np.float32)
    step = max(1, int(rows))
    for r0 in range(0, left.shape[0], step):
        r = slice(r0, r0 + step)
        out[r] = _dpc_block(_unit_block(left[r], scale_l), _unit_block(right[r], scale_r),
                            None if ff_left is None else ff_left[r],
                            None if ff_right is None else ff_right[r])
    return out


def _unit_block(img: np.ndarray, scale: np.float32) -> np.ndarray:
    """A block of an image as float32 in [0, 1] (:func:`to_unit_float` with a fixed scale),
    a copy this module may change in place."""
    if img.dtype == bool or not np.issubdtype(img.dtype, np.integer):
        return np.array(img, dtype=np.float32)
    out = img.astype(np.float32)
    out /= scale
    return out


def _dpc_block(L: np.ndarray, R: np.ndarray, ff_l, ff_r) -> np.ndarray:
    """``0.5 + (L/ff_l − R/ff_r)/(L/ff_l + R/ff_r)`` in place in float32, clipped, NaN -> 0."""
    if ff_l is not None:
        L /= np.asarray(ff_l, dtype=np.float32)
    if ff_r is not None:
        R /= np.asarray(ff_r, dtype=np.float32)
    dpc = np.subtract(L, R)
    L += R
    with np.errstate(divide="ignore", invalid="ignore"):
        dpc /= L
    dpc += np.float32(0.5)
    np.clip(dpc, 0.0, 1.0, out=dpc)  # NaN passes through clip ...
    dpc[np.isnan(dpc)] = 0.0  # ... and is then set to 0, as Octopi does
    return dpc


def dpc_to_uint8(dpc: np.ndarray) -> np.ndarray:
    """8-bit DPC as Octopi writes it: ``(dpc * 255).astype(np.uint8)`` (truncation)."""
    d = np.nan_to_num(np.clip(np.asarray(dpc, dtype=np.float64), 0.0, 1.0), nan=0.0)
    return (d * 255.0).astype(np.uint8)


@lru_cache(maxsize=16)
def _correlation_tables(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A(u) − A(−u) and A(u) + A(−u) for the left-half source, on a centred normalized grid.

    Frequencies are in units of NA/λ (pupil radius 1, source radius ``sigma``); the grid
    spacing is 1/_TABLE_RES and index ``n`` is at ``(n − _TABLE_N/2)/_TABLE_RES``.
    """
    n = _TABLE_N
    nu = (np.arange(n) - n // 2) / _TABLE_RES
    vy, vx = np.meshgrid(nu, nu, indexing="ij")
    r2 = vx**2 + vy**2
    pupil = (r2 <= 1.0).astype(np.float64)
    source = (r2 <= sigma**2).astype(np.float64)
    source *= np.where(vx > 0, 1.0, np.where(vx == 0, 0.5, 0.0))
    g = source * pupil
    i0 = g.sum()
    if i0 <= 0:
        raise ValueError("the illumination half-disk does not overlap the pupil")
    # circular cross-correlation: c[m] = sum_n g[n] P[n + m]; lag m in FFT order
    c = np.real(np.fft.ifft2(np.conj(np.fft.fft2(g)) * np.fft.fft2(pupil))) / i0
    a_pos = np.fft.fftshift(c)  # centred lag order: A(u)
    a_neg = np.roll(a_pos[::-1, ::-1], (1, 1), axis=(0, 1))  # A(−u) on the same grid
    odd = a_pos - a_neg
    even = a_pos + a_neg
    # clean numerical noise far outside the support
    odd[np.abs(odd) < 1e-12] = 0.0
    even[np.abs(even) < 1e-12] = 0.0
    return odd, even


def _sample_table(table: np.ndarray, nuy: np.ndarray, nux: np.ndarray) -> np.ndarray:
    """Bilinear samples of a centred table at normalized frequencies (broadcast 1-D axes)."""
    iy = nuy * _TABLE_RES + _TABLE_N // 2
    ix = nux * _TABLE_RES + _TABLE_N // 2
    cy, cx = np.meshgrid(iy, ix, indexing="ij")
    from scipy import ndimage

    return ndimage.map_coordinates(table, [cy, cx], order=1, mode="constant", cval=0.0)


def weak_object_transfer_functions(
    shape: tuple[int, int],
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    na_illum: float | None = None,
    half: str = "left",
) -> tuple[np.ndarray, np.ndarray]:
    """Absorption and phase weak-object transfer functions for half-disk illumination.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    pixel_size_um : float
        Pixel size at the sample (µm).
    wavelength_um : float
        Illumination wavelength (µm).
    na : float
        Objective NA (pupil radius NA/λ).
    na_illum : float, optional
        Illumination NA (source radius ``na_illum/λ``); default ``na`` (σ = 1).
    half : {"left", "right"}
        Illumination half (``left``: source points with f_x > 0, see module notes).

    Returns
    -------
    (H_u, H_p) : (numpy.ndarray, numpy.ndarray)
        complex64 arrays of ``shape`` in FFT order: ``H_u`` is real-valued (even),
        ``H_p`` purely imaginary (odd in f_x, zero on the f_x = 0 axis).
        ``Î/I0 − δ = H_u μ̂ + H_p φ̂``.
    """
    ny, nx = int(shape[0]), int(shape[1])
    if na <= 0 or wavelength_um <= 0 or pixel_size_um <= 0:
        raise ValueError("na, wavelength_um and pixel_size_um must be > 0")
    sigma = 1.0 if na_illum is None else float(na_illum) / float(na)
    odd, even = _correlation_tables(round(sigma, 6))
    scale = wavelength_um / na  # cycles/µm -> units of NA/λ
    nuy = np.fft.fftfreq(ny, d=pixel_size_um) * scale
    nux = np.fft.fftfreq(nx, d=pixel_size_um) * scale
    a_odd = _sample_table(odd, nuy, nux)
    a_even = _sample_table(even, nuy, nux)
    if half == "right":
        a_odd = -a_odd
    elif half != "left":
        raise ValueError(f"half must be 'left' or 'right', not {half!r}")
    h_u = (-a_even).astype(np.complex64)
    h_p = (1j * a_odd).astype(np.complex64)
    return h_u, h_p


def phase_transfer_function(
    shape: tuple[int, int],
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    na_illum: float | None = None,
) -> np.ndarray:
    """Phase transfer function of Octopi DPC, ``H`` with ``DPC − 0.5 ≈ IFFT(H · FFT(φ))``.

    This is the weak-object phase transfer function of the left-half illumination
    (see :func:`weak_object_transfer_functions`), which equals that of
    ``(L − R)/(L + R)`` to first order.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    pixel_size_um, wavelength_um : float
        Pixel size at the sample and wavelength, in µm.
    na : float
        Objective NA.
    na_illum : float, optional
        Illumination NA (default ``na``).

    Returns
    -------
    numpy.ndarray
        complex64, purely imaginary, FFT order (frequencies ``numpy.fft.fftfreq(n, pixel_size_um)``).
    """
    return weak_object_transfer_functions(
        shape, pixel_size_um, wavelength_um, na, na_illum, half="left"
    )[1]


def _pad_index(shape: tuple[int, int], py: tuple[int, int], px: tuple[int, int]):
    """The mirror padding of :func:`_odd_x_pad` as indices: for each padded row and column its
    source row and column, and which padded columns are sign-flipped."""
    ny, nx = shape
    src_rows = np.pad(np.arange(ny), py, mode="symmetric")
    src_cols = np.pad(np.arange(nx), px, mode="symmetric")
    flip = np.ones(src_cols.size, bool)
    flip[px[0] : px[0] + nx] = False
    return src_rows, src_cols, flip


def _odd_x_pad(d: np.ndarray, py: tuple[int, int], px: tuple[int, int]) -> np.ndarray:
    """Mirror-pad a DPC image: even in y, odd (sign-flipped) in x.

    Mirroring the *object* at the borders turns an x-gradient signal into its negative in
    the mirrored columns, so this padding is consistent with a mirror-symmetric phase.
    ``py`` and ``px`` are (before, after) widths; wider than the image, the mirroring repeats
    (``numpy.pad(mode="symmetric")``). :func:`phase_from_dpc` forms it block by block.
    """
    src_rows, src_cols, flip = _pad_index(d.shape, py, px)
    out = d[src_rows][:, src_cols]
    np.negative(out, out=out, where=flip[None, :])
    return out


def _bilinear_rows(table: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Bilinear samples ``table[iy, ix]`` on the outer grid of 1-D fractional indices
    (float64; 0 outside the table, which is 0 near its border, as
    ``map_coordinates(order=1, mode="constant")``)."""
    n0, n1 = table.shape
    y0 = np.floor(iy).astype(np.intp)
    x0 = np.floor(ix).astype(np.intp)
    wy = (iy - y0)[:, None]
    wx = (ix - x0)[None, :]
    ok_y = (y0 >= 0) & (y0 + 1 < n0)
    ok_x = (x0 >= 0) & (x0 + 1 < n1)
    out = np.zeros((iy.size, ix.size), np.float64)
    if not ok_y.any() or not ok_x.any():
        return out
    ys, xs = np.flatnonzero(ok_y), np.flatnonzero(ok_x)
    ty0, tx0 = y0[ys][:, None], x0[xs][None, :]
    wyb, wxb = wy[ys], wx[:, xs]
    t00, t01 = table[ty0, tx0], table[ty0, tx0 + 1]
    t10, t11 = table[ty0 + 1, tx0], table[ty0 + 1, tx0 + 1]
    out[np.ix_(ys, xs)] = (1 - wyb) * ((1 - wxb) * t00 + wxb * t01) + wyb * ((1 - wxb) * t10 + wxb * t11)
    return out


@lru_cache(maxsize=2)
def phase_filter(
    shape: tuple[int, int],
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    na_illum: float | None,
    reg: float,
) -> np.ndarray:
    """Real Tikhonov phase filter ``w`` on the real-FFT half spectrum, cached.

    ``φ̂ = conj(H) D̂ / (|H|² + reg)`` with ``H = i a`` purely imaginary
    (:func:`phase_transfer_function`) is ``φ̂ = −i w D̂`` with ``w = a / (a² + reg)``;
    ``a`` is odd, so ``φ̂`` keeps the Hermitian symmetry of a real image's spectrum and the
    solve needs only the ``numpy.fft.rfft2`` half (``shape[1] // 2 + 1`` columns). The
    filter is cached per (shape, optics, regularisation): the FOVs of a job share it.

    Parameters
    ----------
    shape : (int, int)
        Padded image shape (ny, nx) the FFT runs on.
    pixel_size_um, wavelength_um : float
        Pixel size at the sample and wavelength (µm).
    na : float
        Objective NA.
    na_illum : float or None
        Illumination NA (None: ``na``).
    reg : float
        Tikhonov regularisation.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx // 2 + 1), frequencies ``fftfreq(ny, pixel_size_um)`` ×
        ``rfftfreq(nx, pixel_size_um)``; read-only (shared by the cache).
    """
    ny, nx = int(shape[0]), int(shape[1])
    if na <= 0 or wavelength_um <= 0 or pixel_size_um <= 0:
        raise ValueError("na, wavelength_um and pixel_size_um must be > 0")
    sigma = 1.0 if na_illum is None else float(na_illum) / float(na)
    odd, _ = _correlation_tables(round(sigma, 6))
    scale = wavelength_um / na  # cycles/µm -> units of NA/λ
    iy = np.fft.fftfreq(ny, d=pixel_size_um) * scale * _TABLE_RES + _TABLE_N // 2
    ix = np.fft.rfftfreq(nx, d=pixel_size_um) * scale * _TABLE_RES + _TABLE_N // 2
    w = np.empty((ny, ix.size), np.float32)
    step = max(1, (1 << 21) // max(1, ix.size))  # ~16 MB of float64 temporaries per block
    for r in range(0, ny, step):
        a = _bilinear_rows(odd, iy[r : r + step], ix)
        w[r : r + step] = a / (a * a + reg)
    w.flags.writeable = False
    return w


def phase_from_dpc(
    dpc: np.ndarray,
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    na_illum: float | None = None,
    reg: float = 3e-3,
    pad: int | None = None,
    remove_offset: bool = True,
    workers: int = 1,
) -> np.ndarray:
    """Quantitative phase from an Octopi DPC image by single-axis Tikhonov deconvolution.

    ``φ̂ = conj(H) · D̂ / (|H|² + reg)`` with ``D = DPC − 0.5`` and ``H`` from
    :func:`phase_transfer_function`, computed as one float32 real FFT pair with the cached
    half-spectrum filter of :func:`phase_filter`.

    Parameters
    ----------
    dpc : numpy.ndarray
        DPC image (y, x) in [0, 1] (0.5 = no gradient), e.g. from :func:`dpc_octopi`;
        uint8 input is divided by 255. Compute it from flatfield-corrected images.
    pixel_size_um : float
        Pixel size at the sample (µm).
    wavelength_um : float
        Illumination wavelength (µm).
    na : float
        Objective NA.
    na_illum : float, optional
        Illumination NA (default ``na``).
    reg : float
        Tikhonov regularization α (``|H|`` peaks near 1). Default 3e-3: on simulated
        smears (NA 0.4, 0.333 µm px, shot noise of 5000 e⁻) the correlation with the true
        phase is r ≈ 0.90 at 3e-3, 0.86 at 1e-2; Tian & Waller used 5e-3 summed over four
        images (≈ 2.5e-3 per axis). Larger = smoother, less low-frequency recovery, fewer
        streaks along x.
    pad : int, optional
        Padding (px) on every side before the FFT; default a quarter of the larger image
        side (at least 16 px). The image is mirrored, with the sign flipped in x, so that
        the padding corresponds to a mirrored object and does not create edge artefacts.
    remove_offset : bool
        Subtract the mean of ``DPC − 0.5`` first. A constant offset (left/right brightness
        imbalance, or the 8-bit truncation of Octopi's DPC: 0.5 is stored as 127) carries no
        phase information but would otherwise turn into a phase ramp along x.
    workers : int
        Threads of the FFTs (``scipy.fft`` workers).

    Returns
    -------
    numpy.ndarray
        float32 phase in radians, same shape as ``dpc``, mean 0 (the mean and the
        variations along y only — frequencies with f_x = 0 — are not measurable with
        left/right DPC).

    Notes
    -----
    Memory: the half spectrum of the padded image (complex64, ≈ 2.25 × 4 bytes per image
    pixel with the default padding), the cached filter (≈ 2.25 × 2 bytes per pixel) and the
    float32 result are the only image-sized arrays: the padded image is never formed (its
    rows are mirrored from the DPC and transformed along x block by block), and the inverse
    runs in place along y and then along x for blocks of the rows kept.
    """
    d = to_unit_float(dpc)  # the caller's float32 image itself: read, never changed
    if d.ndim != 2:
        raise ValueError(f"expected a 2-D DPC image, got shape {d.shape}")
    ny, nx = d.shape
    block = max(1, (1 << 22) // max(1, nx))  # ~16 MB of float32 rows per block
    offset = np.float32(0.0)
    if remove_offset:  # the mean of nan_to_num(DPC − 0.5), accumulated in float64
        total = 0.0
        for r in range(0, ny, block):
            total += float(_centred(d[r : r + block], offset).sum(dtype=np.float64))
        offset = np.float32(total / d.size)
    if pad is None:
        pad = max(16, max(ny, nx) // 4)
    py = min(int(pad), ny)
    px = min(int(pad), nx)
    # widen the trailing padding to an FFT-friendly size
    fy = sfft.next_fast_len(ny + 2 * py)
    fx = sfft.next_fast_len(nx + 2 * px)
    # the padded image (:func:`_odd_x_pad`) as source indices: mirrored rows and columns, the
    # padded columns sign-flipped
    src_rows, src_cols, flip = _pad_index((ny, nx), (py, fy - ny - py), (px, fx - nx - px))
    w = phase_filter((fy, fx), float(pixel_size_um), float(wavelength_um), float(na),
                     None if na_illum is None else float(na_illum), float(reg))
    nw = max(1, int(workers))
    spec = np.empty((fy, fx // 2 + 1), np.complex64)
    step = max(1, (1 << 22) // max(1, fx))
    for r in range(0, fy, step):
        rows = _centred(d[src_rows[r : r + step]], offset)[:, src_cols]
        np.negative(rows, out=rows, where=flip[None, :])
        spec[r : r + step] = sfft.rfft(rows, axis=1, workers=nw)
        del rows
    spec = sfft.fft(spec, axis=0, overwrite_x=True, workers=nw)  # in place: rfft2 of the padded image
    _apply_minus_i_w(spec, w)
    # the inverse in two steps, in place along y, then along x only for the rows kept: no
    # padded float32 result and no complex copy (scipy's irfft2 makes one)
    spec = sfft.ifft(spec, axis=0, overwrite_x=True, workers=nw)
    out = np.empty((ny, nx), np.float32)
    rows = max(1, (1 << 22) // max(1, fx))  # ~16 MB of float32 rows per block
    for r in range(0, ny, rows):
        e = min(r + rows, ny)
        out[r:e] = sfft.irfft(spec[py + r : py + e], n=fx, axis=1, workers=nw)[:, px : px + nx]
    del spec
    out -= np.float32(out.mean(dtype=np.float64))
    return out


def _centred(rows: np.ndarray, offset: np.float32) -> np.ndarray:
    """``nan_to_num(rows − 0.5) − offset`` as a new float32 array (NaN -> 0)."""
    out = np.subtract(rows, np.float32(0.5), dtype=np.float32)
    np.nan_to_num(out, copy=False, nan=0.0)
    if offset:
        out -= offset
    return out


def _apply_minus_i_w(spec: np.ndarray, w: np.ndarray, rows: int = 256) -> None:
    """``spec *= −i w`` in place (complex64 ``spec``, float32 ``w``), in blocks of rows."""
    for r in range(0, spec.shape[0], rows):
        v = spec[r : r + rows].view(np.float32)
        re, im = v[:, 0::2], v[:, 1::2]
        wb = w[r : r + rows]
        tmp = re * wb
        np.multiply(im, wb, out=re)
        np.negative(tmp, out=im)
