"""The one OME-Zarr writer (NGFF 0.5, Zarr v3): FOV images, labels and movies.

Every NGFF group scopeflow writes is described with the models of ``yaozarrs`` (a maintained
NGFF library), which validate the metadata as it is built, and created by
``yaozarrs.write.v05.prepare_image``: Zarr v3 arrays whose ``dimension_names`` match the
axes, as NGFF 0.5 requires. Pixels are written with zarr-python (zstd level 0).

:mod:`scopeflow.io.ome_zarr` lays FOV images and labels out as a per-sample plate; the bead
movies (one image, axes t, y, x) are made here by :func:`create_movie` and
:func:`finish_movie`.

Coordinates: (y, x), origin at the centre of pixel (0, 0); scale transforms are in
micrometres (and seconds for ``t``).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # zarr is imported where used (job start-up)
    import zarr

__all__ = [
    "CHANNEL_COLORS",
    "NGFF_VERSION",
    "create_array",
    "create_group",
    "create_movie",
    "downsample_mean",
    "finish_movie",
    "level_shapes",
    "levels_for",
    "movie_model",
    "multiscale_model",
    "ome_dict",
    "omero_model",
]

NGFF_VERSION = "0.5"
#: Display colour of a channel in the ``omero`` metadata (hex RGB); others get white.
CHANNEL_COLORS = {"dpc": "FFFFFF", "phase": "FFFFFF", "fluorescence_r": "FF0000",
                  "fluorescence_g": "00FF00", "fluorescence_b": "0000FF"}


# ----------------------------------------------------------------- arrays and metadata


def create_array(path, shape, dtype, chunks, *, shards=None, dimension_names=None, overwrite=False,
                 compression=None):
    """Array factory handed to ``yaozarrs``: zarr-python, zstd level 0, fill value 0."""
    import zarr
    from zarr.codecs import BytesCodec, ZstdCodec

    return zarr.create_array(
        str(path), shape=shape, chunks=chunks, shards=shards, dtype=dtype, fill_value=0,
        dimension_names=dimension_names, zarr_format=3, overwrite=overwrite,
        serializer=BytesCodec(endian="little"), compressors=(ZstdCodec(level=0, checksum=False),),
    )


def create_group(dest: Path, model, shapes: Sequence[tuple], dtype, chunks: tuple, extra: Mapping | None):
    """Create an NGFF image / label group and its empty level arrays (replacing any old one)."""
    from yaozarrs.write.v05 import prepare_image

    if dest.exists() and not (dest / "zarr.json").exists():
        shutil.rmtree(dest)  # a half-created group from an interrupted job
    _, arrays = prepare_image(dest, model, [(tuple(s), dtype) for s in shapes],
                              extra_attributes=dict(extra) if extra else None, chunks=chunks,
                              writer=create_array, overwrite=True)
    return arrays


def levels_for(shape: Sequence[int], min_size: int = 256, max_levels: int = 4) -> int:
    """Number of pyramid levels so the smallest level is still >= ``min_size`` px."""
    n = 1
    size = min(shape)
    while n < max_levels and size // 2 >= min_size:
        size //= 2
        n += 1
    return n


def downsample_mean(img: np.ndarray) -> np.ndarray:
    """2x block-mean of the last two axes (odd edges dropped)."""
    h, w = img.shape[-2] // 2 * 2, img.shape[-1] // 2 * 2
    v = np.asarray(img[..., :h, :w], dtype=np.float32)  # no copy of a float32 image
    return 0.25 * (v[..., 0::2, 0::2] + v[..., 1::2, 0::2] + v[..., 0::2, 1::2] + v[..., 1::2, 1::2])


def level_shapes(shape: Sequence[int], n_levels: int) -> list[tuple]:
    """Shapes of the pyramid levels (leading axes kept, y and x halved, odd edges dropped)."""
    out = [tuple(shape)]
    for _ in range(1, n_levels):
        *lead, h, w = out[-1]
        out.append((*lead, h // 2, w // 2))
    return out


def multiscale_model(name: str, n_levels: int, pixel_size_um: float, kind: str):
    """Multiscale of a (c, y, x) image or label (``kind``): level ``n`` is 2**n times coarser."""
    from yaozarrs import v05

    datasets = [
        v05.Dataset(path=str(level), coordinateTransformations=[
            v05.ScaleTransformation(scale=[1.0, pixel_size_um * 2**level, pixel_size_um * 2**level])])
        for level in range(n_levels)
    ]
    axes = [v05.ChannelAxis(name="c", type="channel"),
            v05.SpaceAxis(name="y", type="space", unit="micrometer"),
            v05.SpaceAxis(name="x", type="space", unit="micrometer")]
    return v05.Multiscale(name=name, axes=axes, datasets=datasets,
                          type="mean" if kind == "image" else "nearest")


def omero_model(names: Sequence[str], images: Sequence[np.ndarray], colors: Mapping[str, str] | None):
    """``omero`` display metadata: a 0.5–99.5 % window per channel, exact min and max.

    The percentiles are taken on a regular subsample of at most ~1 Mpx (every ``s``-th pixel
    in y and x): a display window, computed in a tenth of the time of the full image's.
    """
    from yaozarrs import v05

    colors = {**CHANNEL_COLORS, **dict(colors or {})}
    channels = []
    for n, img in zip(names, images):
        step = max(1, math.ceil(math.sqrt(img.size / 1e6)))
        lo, hi = (float(v) for v in np.percentile(img[::step, ::step], [0.5, 99.5]))
        channels.append(v05.OmeroChannel(
            label=n, color=colors.get(n, "FFFFFF"), active=True,
            window=v05.OmeroWindow(start=lo, end=hi, min=float(img.min()), max=float(img.max()))))
    grey = all(colors.get(n, "FFFFFF") == "FFFFFF" for n in names)
    return v05.Omero(channels=channels,
                     rdefs=v05.OmeroRenderingDefs(model="greyscale" if grey else "color"))


def ome_dict(model) -> dict:
    """The ``ome`` attribute (JSON) of a ``yaozarrs`` model."""
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


# ----------------------------------------------------------------- movies (t, y, x)


def create_movie(
    path: str | Path, shape: tuple[int, int, int], dtype, *, chunk: int = 1024,
) -> zarr.Array:
    """Create (overwrite) a single-image movie store and return its level-0 array (t, y, x).

    The array may be resized along ``t`` while frames arrive; :func:`finish_movie` writes
    the NGFF metadata (time and pixel calibration) once the frames are in.
    """
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    model = movie_model("movie", 1.0, 1.0)
    c = (1, min(chunk, shape[1]), min(chunk, shape[2]))
    return create_group(path, model, [shape], dtype, c, None)["0"]


def movie_model(name: str, frame_interval_s: float | None, pixel_size_um: float | None,
                omero=None):
    """NGFF image model of a movie: one level, axes t (s), y, x (µm); ``omero``: display metadata.

    An unknown frame interval or pixel size (None) gives scale 1 and no unit on its axes
    (frames, pixels).
    """
    from yaozarrs import v05

    tu, su = ("second" if frame_interval_s else None), ("micrometer" if pixel_size_um else None)
    axes = [v05.TimeAxis(name="t", type="time", unit=tu),
            v05.SpaceAxis(name="y", type="space", unit=su),
            v05.SpaceAxis(name="x", type="space", unit=su)]
    dt, ps = (float(frame_interval_s or 1.0), float(pixel_size_um or 1.0))
    ds = v05.Dataset(path="0", coordinateTransformations=[
        v05.ScaleTransformation(scale=[dt, ps, ps])])
    return v05.Image(multiscales=[v05.Multiscale(name=name, axes=axes, datasets=[ds])], omero=omero)


def finish_movie(
    path: str | Path, *, name: str, fps: float | None, pixel_size_um: float | None,
    window: tuple[float, float],
    attrs: Mapping | None = None,
) -> None:
    """Write a movie store's NGFF metadata: axes t (s), y, x (µm), one ``frames`` channel.

    Parameters
    ----------
    path : str or Path
        Store made by :func:`create_movie`, frames written.
    name : str
        Image name.
    fps : float or None
        Frames per second (the ``t`` scale is ``1 / fps`` s; None: unknown, scale 1 frame).
    pixel_size_um : float or None
        Pixel size at the sample (µm; None: unknown, scale 1 px).
    window : (float, float)
        Display window (e.g. the first frame's 0.5–99.5 % percentiles).
    attrs : mapping, optional
        Stored under ``scopeflow``.
    """
    import zarr
    from yaozarrs import v05

    lo, hi = (float(v) for v in window)
    display = v05.Omero(channels=[v05.OmeroChannel(label="frames", color="FFFFFF", active=True,
                                                   window=v05.OmeroWindow(start=lo, end=hi, min=lo, max=hi))],
                        rdefs=v05.OmeroRenderingDefs(model="greyscale"))
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    root.attrs.update({"ome": ome_dict(movie_model(name, 1.0 / fps if fps else None, pixel_size_um, display)),
                       "scopeflow": dict(attrs or {})})
