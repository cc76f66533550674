"""Per-sample OME-Zarr (NGFF 0.5, Zarr v3): one multiscale image per field of view.

Layout of ``<sample>.ome.zarr`` (bioformats2raw-style, so napari-ome-zarr opens every FOV)::

    <sample>.ome.zarr/             attrs: ome.version, ome.bioformats2raw.layout = 3, scopeflow provenance
        OME/                       attrs: ome.series = [fov names]
        <fov>/                     NGFF image, axes (c, y, x), channels e.g. dpc, phase
            0, 1, 2 ...            pyramid levels, 2x mean-downsampled in y and x
            labels/                attrs: ome.labels = ["cells"]
                cells/             NGFF image-label, axes (c, y, x) with c = 1, uint32
                    0, 1, 2 ...    nearest-neighbour (strided) downsampling

Coordinates: (y, x), origin at the centre of pixel (0, 0); scale transforms are in micrometres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import zarr

NGFF_VERSION = "0.5"


def _levels_for(shape: Sequence[int], min_size: int = 256, max_levels: int = 4) -> int:
    """Number of pyramid levels so the smallest level is still >= ``min_size`` px."""
    n = 1
    size = min(shape)
    while n < max_levels and size // 2 >= min_size:
        size //= 2
        n += 1
    return n


def _downsample_mean(img: np.ndarray) -> np.ndarray:
    """2x block-mean of the last two axes (odd edges dropped)."""
    h, w = img.shape[-2] // 2 * 2, img.shape[-1] // 2 * 2
    v = img[..., :h, :w].astype(np.float32)
    return 0.25 * (v[..., 0::2, 0::2] + v[..., 1::2, 0::2] + v[..., 0::2, 1::2] + v[..., 1::2, 1::2])


def _multiscales(name: str, n_levels: int, pixel_size_um: float, kind: str) -> dict:
    datasets = []
    for level in range(n_levels):
        s = pixel_size_um * 2**level
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, s, s]}],
            }
        )
    return {
        "name": name,
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": datasets,
        "type": "mean" if kind == "image" else "nearest",
    }


def create_sample_store(path: str | Path, fov_names: Sequence[str], provenance: Mapping) -> Path:
    """Create (overwrite) the per-sample store with its series list and provenance.

    Parameters
    ----------
    path : str or Path
        ``<sample>.ome.zarr`` directory to create.
    fov_names : sequence of str
        Names of the FOV image groups, in acquisition order.
    provenance : mapping
        JSON-serialisable provenance (scopeflow version, config hash, inputs ...).
    """
    path = Path(path)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update(
        {"ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3}, "scopeflow": dict(provenance)}
    )
    ome = root.create_group("OME")
    ome.attrs.update({"ome": {"version": NGFF_VERSION, "series": list(fov_names)}})
    return path


def write_image(
    path: str | Path,
    fov: str,
    channels: Mapping[str, np.ndarray],
    pixel_size_um: float,
    *,
    chunk: int = 1024,
    attrs: Mapping | None = None,
) -> None:
    """Write one FOV as an NGFF multiscale image with the given channels.

    Parameters
    ----------
    path : str or Path
        Sample store created by :func:`create_sample_store`.
    fov : str
        FOV group name.
    channels : mapping of str to ndarray
        Channel name -> 2-D float32 image (y, x); all the same shape.
    pixel_size_um : float
        Pixel size at the sample in micrometres (level 0).
    chunk : int
        Chunk edge in pixels (y and x).
    attrs : mapping, optional
        Extra per-FOV attributes (stage position, source files ...) stored under ``scopeflow``.
    """
    names = list(channels)
    stack = np.stack([np.asarray(channels[n], dtype=np.float32) for n in names])
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    group = root.create_group(fov, overwrite=True)
    n_levels = _levels_for(stack.shape[1:])
    level = stack
    for i in range(n_levels):
        c = min(chunk, level.shape[1]), min(chunk, level.shape[2])
        arr = group.create_array(str(i), shape=level.shape, chunks=(1, *c), dtype="float32")
        arr[...] = level
        if i + 1 < n_levels:
            level = _downsample_mean(level)
    window = {}
    omero_channels = []
    for n, img in zip(names, stack):
        lo, hi = (float(v) for v in np.percentile(img, [0.5, 99.5]))
        window[n] = (lo, hi)
        omero_channels.append(
            {
                "label": n,
                "color": "FFFFFF",
                "active": True,
                "window": {"start": lo, "end": hi, "min": float(img.min()), "max": float(img.max())},
            }
        )
    group.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [_multiscales(fov, n_levels, pixel_size_um, "image")],
                "omero": {"channels": omero_channels, "rdefs": {"model": "greyscale"}},
            },
            "scopeflow": {"channels": names, "pixel_size_um": pixel_size_um, **dict(attrs or {})},
        }
    )


def labels_array(
    path: str | Path, fov: str, name: str = "cells", *, chunk: int = 1024, attrs: Mapping | None = None,
) -> zarr.Array:
    """Level 0 of ``<fov>/labels/<name>``, shape (1, y, x) uint32, created when missing.

    An existing label image is returned as it is (so an interrupted segmentation can resume
    into it); call :func:`finish_labels` once it is complete to write the pyramid levels and
    the NGFF metadata.
    """
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    image = root[fov]
    labels_group = image.require_group("labels")
    existing = labels_group.attrs.get("ome", {}).get("labels", [])
    if name not in existing:
        labels_group.attrs.update(
            {"ome": {"version": NGFF_VERSION, "labels": sorted(set(existing) | {name})}}
        )
    group = labels_group.require_group(name)
    if attrs is not None:
        group.attrs.update({"scopeflow": dict(attrs)})
    shape = image["0"].shape[1:]
    if "0" in group and tuple(group["0"].shape) == (1, *shape):
        return group["0"]
    c = min(chunk, shape[0]), min(chunk, shape[1])
    return group.create_array("0", shape=(1, *shape), chunks=(1, *c), dtype="uint32", fill_value=0,
                              overwrite=True)


def finish_labels(path: str | Path, fov: str, name: str = "cells") -> None:
    """Write the nearest-neighbour (strided) pyramid of a label image and its NGFF metadata."""
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    image = root[fov]
    ps = float(image.attrs["scopeflow"]["pixel_size_um"])
    n_levels = len(image.attrs["ome"]["multiscales"][0]["datasets"])
    group = image["labels"][name]
    level0 = group["0"]
    for i in range(1, n_levels):
        level = level0[:, :: 2**i, :: 2**i]
        c = tuple(min(a, b) for a, b in zip(level0.chunks, level.shape))
        group.create_array(str(i), shape=level.shape, chunks=c, dtype="uint32", overwrite=True)[...] = level
    group.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [_multiscales(name, n_levels, ps, "label")],
                "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}},
            }
        }
    )


def write_labels(
    path: str | Path,
    fov: str,
    labels: np.ndarray,
    name: str = "cells",
    *,
    chunk: int = 1024,
    attrs: Mapping | None = None,
) -> None:
    """Write an in-memory instance label image under ``<fov>/labels/<name>`` with its pyramid.

    Parameters
    ----------
    path : str or Path
        Sample store.
    fov : str
        FOV group name (must exist).
    labels : ndarray
        uint32 (y, x) instance labels, 0 = background; same shape as the FOV image.
    name : str
        Label image name.
    chunk : int
        Chunk edge in pixels.
    attrs : mapping, optional
        Extra attributes (method, model sha256 ...) stored under ``scopeflow``.
    """
    arr = labels_array(path, fov, name, chunk=chunk, attrs=attrs or {})
    arr[...] = np.asarray(labels, dtype=np.uint32)[None]
    finish_labels(path, fov, name)


def fov_names(path: str | Path) -> list[str]:
    """FOV group names of a sample store, in acquisition order."""
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    return list(root["OME"].attrs["ome"]["series"])


def read_channel(path: str | Path, fov: str, channel: str, level: int = 0) -> zarr.Array | np.ndarray:
    """Return the 2-D (y, x) array of one channel of a FOV (lazy zarr view at level 0).

    Raises
    ------
    KeyError
        If the FOV or the channel does not exist, naming what does.
    """
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    if fov not in root:
        raise KeyError(f"{path}: no FOV {fov!r}; have {fov_names(path)}")
    group = root[fov]
    names = group.attrs["scopeflow"]["channels"]
    if channel not in names:
        raise KeyError(f"{path}/{fov}: no channel {channel!r}; have {names}")
    return group[str(level)][names.index(channel)]


def read_labels(path: str | Path, fov: str, name: str = "cells", level: int = 0) -> np.ndarray:
    """Return the (y, x) uint32 label image of a FOV."""
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    return root[fov]["labels"][name][str(level)][0]


def fov_attrs(path: str | Path, fov: str) -> dict:
    """The ``scopeflow`` attributes of a FOV image (pixel size, channels, stage position ...)."""
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    return dict(root[fov].attrs["scopeflow"])


def store_attrs(path: str | Path) -> dict:
    """The ``scopeflow`` provenance attributes of a sample store."""
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    return dict(root.attrs.get("scopeflow", {}))
