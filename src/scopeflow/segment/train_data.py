"""Training data of the M2U-Net segmenter: image/mask pairs, targets, augmented crops.

Masks are binary PNGs (0/255; touching cells separated by 1-px background lines,
instances = 4-connected components) or label images, paired with their images by file
stem (:func:`pair_images_masks`). Targets (:func:`make_target`):

* ``head="3class"``: 0 = background, 1 = cell body, 2 = cell contour, where the
  contour is the inner ``contour_width``-pixel ring of every instance
  (:func:`skimage.segmentation.find_boundaries` with ``mode="inner"``);
* ``head="1class"``: foreground.

Inputs are z-scored with whole-FOV statistics (as
:class:`~scopeflow.segment.unet.UNetPredictor` does). Augmentation (:class:`CropPool`) draws
everything from one :class:`numpy.random.Generator`: random crops, flips, 90° rotations,
small rotations (±10°), Poisson and Gaussian noise, contrast/brightness, slight blur;
geometric transforms act on the image and the instance labels alike and targets are made
afterwards. The training itself is :mod:`scopeflow.segment.train`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from scopeflow.errors import ScopeflowError
from scopeflow.io import images
from scopeflow.io.images import image_files

__all__ = ["CropPool", "make_target", "pair_images_masks", "read_image", "read_instances"]

_CROSS = ndi.generate_binary_structure(2, 1)
_STEM_SUFFIXES = (
    "_dpc", "_cp_masks", "_masks", "_mask", "_labels", "_label", "_seg", "_gt", "_img", "_image",
)


# ----------------------------------------------------------------------------- I/O
def read_image(path: str | Path) -> np.ndarray:
    """Read a training DPC image as float32 (y, x) in [0, 1].

    :func:`scopeflow.io.images.read_image` with the ``"mean"`` colour rule: an RGB(A) image
    becomes the mean of its colour channels (Octopi PNGs repeat the DPC 3x); uint8 / 255,
    uint16 / 65535, floats kept.
    """
    return images.read_image(path, "mean")


def read_instances(path: str | Path) -> np.ndarray:
    """Read a mask as int32 instance labels.

    A binary mask (one positive value, e.g. 0/255) becomes its 4-connected
    components; a label image keeps its ids.
    """
    arr = images.read_image(path, "first", unit=False)
    pos = arr[arr > 0]
    if pos.size and pos.min() == pos.max():
        lab, _ = ndi.label(arr > 0, structure=_CROSS)
        return lab.astype(np.int32)
    return arr.astype(np.int32)


def _key(path: Path) -> str:
    stem = path.stem.lower()
    changed = True
    while changed:
        changed = False
        for suf in _STEM_SUFFIXES:
            if stem.endswith(suf) and len(stem) > len(suf):
                stem = stem[: -len(suf)]
                changed = True
    return stem


def pair_images_masks(
    images: str | Path | Sequence[str | Path], masks: str | Path | Sequence[str | Path]
) -> list[tuple[Path, Path]]:
    """Pair images with masks by file stem.

    Stems are compared after removing suffixes such as ``_dpc``, ``_mask``,
    ``_label``, ``_cp_masks`` (so ``10_20_0_dpc.png`` ↔ ``10_20_0_mask.png``,
    ``dpc_2048_00.png`` ↔ ``dpc_2048_00_mask.png`` and Cellpose/Omnipose's
    ``caulo_15.tif`` ↔ ``caulo_15_cp_masks.tif``).

    Parameters
    ----------
    images, masks : path or sequence of paths
        Files and/or folders (folders contribute their image files, sorted).

    Returns
    -------
    list of (image, mask) paths
        In the order of ``images``. Masks without an image are ignored.

    Raises
    ------
    ScopeflowError
        An image has no mask, or two masks share a stem.
    """
    imgs = image_files(images)
    by_key: dict[str, Path] = {}
    for m in image_files(masks):
        k = _key(m)
        if k in by_key:
            raise ScopeflowError(f"masks {by_key[k]} and {m} pair with the same image stem {k!r}")
        by_key[k] = m
    pairs = []
    for im in imgs:
        k = _key(im)
        if k not in by_key:
            raise ScopeflowError(f"no mask for image {im} (looked for stem {k!r} + _mask)")
        pairs.append((im, by_key[k]))
    if not pairs:
        raise ScopeflowError(f"no training images found in {images}")
    return pairs


# ------------------------------------------------------------------------- targets
def make_target(labels: np.ndarray, head: str = "3class", contour_width: int = 1) -> np.ndarray:
    """Make the training target from instance labels.

    Parameters
    ----------
    labels : np.ndarray of int, shape (h, w)
        Instances (0 = background).
    head : {"3class", "1class"}
        Target kind.
    contour_width : int, default 1
        Width (pixels) of the inner contour ring (3-class head).

    Returns
    -------
    np.ndarray
        int64 classes 0/1/2 (background/body/contour) for ``"3class"``; float32
        foreground 0/1 for ``"1class"``.
    """
    from skimage.segmentation import find_boundaries

    fg = labels > 0
    if head == "1class":
        return fg.astype(np.float32)
    if head != "3class":
        raise ValueError(f"head must be '3class' or '1class', got {head!r}")
    target = fg.astype(np.int64)
    lab = labels
    for _ in range(max(1, int(contour_width))):
        ring = find_boundaries(lab, connectivity=1, mode="inner") & (lab > 0)
        target[ring] = 2
        lab = np.where(ring, 0, lab)
    return target


# -------------------------------------------------------------------- augmentation
class CropPool:
    """Training images (raw [0, 1] + FOV stats) and instance labels; crop sampler."""

    def __init__(self, pairs: list[tuple[Path, Path]]):
        self.images, self.labels, self.stats, self.names = [], [], [], []
        for ip, mp in pairs:
            im = read_image(ip)
            lab = read_instances(mp)
            if im.shape != lab.shape:
                raise ScopeflowError(
                    f"image {ip} {im.shape} and mask {mp} {lab.shape} differ in shape"
                )
            self.images.append(im)
            self.labels.append(lab)
            self.stats.append((float(im.mean()), float(max(im.std(), 1e-6))))
            self.names.append(ip.name)
        area = np.array([im.size for im in self.images], dtype=np.float64)
        self.p = area / area.sum()

    def sample(
        self, rng: np.random.Generator, crop: int, augment: bool, orient: str = "dihedral"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return one augmented (z-scored image, instance labels) crop."""
        i = int(rng.choice(len(self.images), p=self.p))
        im, lab = self.images[i], self.labels[i]
        mean, std = self.stats[i]
        angle = float(rng.uniform(-10, 10)) if augment and rng.random() < 0.5 else 0.0
        if angle:
            a = math.radians(angle)
            win = int(math.ceil(crop * (abs(math.cos(a)) + abs(math.sin(a))))) + 4
        else:
            win = crop
        y0 = int(rng.integers(0, max(1, im.shape[0] - win + 1)))
        x0 = int(rng.integers(0, max(1, im.shape[1] - win + 1)))
        x = _window(im, y0, x0, win)
        y = _window(lab, y0, x0, win)
        if angle:
            x, y = _rotate(x, y, angle, crop)
        if augment:
            if orient == "dihedral":
                k = int(rng.integers(0, 4))
                x, y = np.rot90(x, k), np.rot90(y, k)
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[:, ::-1]
            elif orient == "dpc_x" and rng.random() < 0.5:
                x, y = x[::-1], y[::-1]  # a y-flip keeps the x-direction DPC relief
            elif orient == "dpc_y" and rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]  # an x-flip keeps the y-direction DPC relief
            if rng.random() < 0.25:  # Poisson (shot) noise on the raw DPC signal
                lam = float(rng.uniform(100, 1000))
                x = rng.poisson(np.clip(x, 0, None) * lam).astype(np.float32) / lam
        x = (np.ascontiguousarray(x, dtype=np.float32) - mean) / std
        y = np.ascontiguousarray(y)
        if augment:
            if rng.random() < 0.25:
                x = ndi.gaussian_filter(x, float(rng.uniform(0.5, 1.2)))
            x = x * float(np.exp(rng.uniform(-0.4, 0.4))) + float(rng.uniform(-0.3, 0.3))
            if rng.random() < 0.5:
                x = x + rng.normal(0.0, float(rng.uniform(0.0, 0.2)), x.shape).astype(np.float32)
        return x.astype(np.float32), y


def _window(a: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    w = a[y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - w.shape[0], size - w.shape[1]
    if ph or pw:
        mode = "reflect" if (ph < w.shape[0] and pw < w.shape[1]) else "edge"
        w = np.pad(w, ((0, ph), (0, pw)), mode=mode)
    return w


def _rotate(
    x: np.ndarray, lab: np.ndarray, angle: float, out: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate image (linear) and labels (nearest) about the window centre; crop ``out``²."""
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c_in = (np.array(x.shape) - 1) / 2.0
    c_out = (np.array([out, out]) - 1) / 2.0
    offset = c_in - rot @ c_out
    shape = (out, out)
    xr = ndi.affine_transform(x, rot, offset=offset, output_shape=shape, order=1, mode="reflect")
    yr = ndi.affine_transform(lab, rot, offset=offset, output_shape=shape, order=0, mode="nearest")
    return xr.astype(np.float32), yr
