"""Per-sample OME-Zarr (NGFF 0.5, Zarr v3): an NGFF plate with one multiscale image per FOV.

Every group is written by the one NGFF writer, :mod:`scopeflow.io.ngff_write` (``yaozarrs``
models, Zarr v3 arrays, zstd level 0), which also writes the bead movies.

Layout of ``<sample>.ome.zarr`` (an NGFF plate, so viewers open the whole slide from the
root; the wells are the slide's stage grid)::

    <sample>.ome.zarr/                 ome.plate (rows, columns, wells), scopeflow (provenance),
                                       scopeflow_layout.fovs = {FOV name: "row/column/field"}
        A/                             plate row (Octopi grid row i = 0 -> A, 1 -> B, ...)
            1/                         well (Octopi grid column j = 0 -> 1, ...): ome.well
                0/                     field = one FOV: NGFF image, axes (c, y, x), channels
                    0, 1, 2 ...        e.g. dpc, phase; levels 2x mean-downsampled in y and x
                    labels/            ome.labels = ["cells"]
                        cells/         NGFF image-label, axes (c, y, x) with c = 1, uint32
                            0, 1 ...   nearest-neighbour (strided) downsampling

FOVs that share a grid position (other time points or z planes) are further fields of the
same well. FOVs without a grid position (precomputed DPC files) fill a near-square grid of
wells in name order. :func:`fov_path` gives a FOV's group path; stores written before this
layout (the bioformats2raw-style ``<fov>/`` groups) are still read.

Coordinates: (y, x), origin at the centre of pixel (0, 0); scale transforms are in
micrometres.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scopeflow.io.ngff_write import (
    NGFF_VERSION,
    downsample_mean,
    level_shapes,
    levels_for,
    multiscale_model,
    ome_dict,
    omero_model,
    create_group,
)

if TYPE_CHECKING:  # zarr is imported where used: creating a store needs only JSON
    import zarr

#: Root attribute holding the FOV name -> group path index of a sample store.
LAYOUT_ATTR = "scopeflow_layout"


# ----------------------------------------------------------------- the sample store


def _row_name(index: int) -> str:
    """Plate row name: 0 -> A, 25 -> Z, 26 -> AA ..."""
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def plate_layout(
    fov_names: Sequence[str], positions: Mapping[str, tuple[int, int]] | None = None,
    keep: Mapping[str, tuple[int, int, int]] | None = None,
) -> dict[str, tuple[int, int, int]]:
    """Place FOVs on the plate grid: FOV name -> (row index, column index, field index).

    Parameters
    ----------
    fov_names : sequence of str
        FOV names in acquisition order (the field order within a well).
    positions : mapping, optional
        FOV name -> (row, column) grid index, e.g. the Octopi ``(i, j)``; FOVs sharing a
        position become fields 0, 1, ... of that well. Without it (or when a FOV lacks one),
        FOVs fill a near-square grid row by row in name order, one per well.
    keep : mapping, optional
        Places of FOVs already in the store (with ``positions``): they keep them, the others
        become the next fields of their wells.
    """
    names = list(fov_names)
    if positions and all(n in positions for n in names) and all(
            min(positions[n]) >= 0 for n in names):
        out, fields = dict(keep or {}), {}
        for r, c, f in out.values():
            fields[(r, c)] = max(fields.get((r, c), 0), f + 1)
        for n in names:
            if n in out:
                continue
            r, c = (int(v) for v in positions[n])
            out[n] = (r, c, fields.get((r, c), 0))
            fields[(r, c)] = out[n][2] + 1
        return {n: out[n] for n in names}
    ncols = max(1, math.ceil(math.sqrt(len(names))))
    return {n: (k // ncols, k % ncols, 0) for k, n in enumerate(names)}


def _kept_layout(path: Path, names: Sequence[str]) -> dict[str, tuple[int, int, int]] | None:
    """Places of the FOVs of an existing store, None when there is none or one is not in ``names``."""
    import zarr

    if not (path / "zarr.json").is_file():
        return None
    try:
        index = _layout(zarr.open_group(str(path), mode="r"))
    except (KeyError, ValueError, OSError):
        return None
    out = {}
    for fov, where in index.items():
        row, col, field = where.split("/")
        r = 0
        for ch in row:
            r = r * 26 + ord(ch) - 64
        out[fov] = (r - 1, int(col) - 1, int(field))
    return out if set(out) <= set(names) else None


def _replace_attrs(group: Path, attrs: Mapping) -> None:
    """Replace attributes in a group's ``zarr.json`` atomically (readers see old or new)."""
    import json
    import os

    meta = group / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"] = {**doc.get("attributes", {}), **attrs}
    tmp = meta.with_name(f".zarr.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, meta)


def create_sample_store(
    path: str | Path,
    fov_names: Sequence[str],
    provenance: Mapping,
    *,
    positions: Mapping[str, tuple[int, int]] | None = None,
    name: str | None = None,
    extend: bool = False,
) -> Path:
    """Create (overwrite) the per-sample store: the plate, its rows and wells, the FOV index.

    The FOV images themselves are written later (:func:`write_image`), each by the job that
    computes it; the store is complete once every FOV image (and its labels) is written.

    Parameters
    ----------
    path : str or Path
        ``<sample>.ome.zarr`` directory to create.
    fov_names : sequence of str
        Names of the FOVs, in acquisition order.
    provenance : mapping
        JSON-serialisable provenance (scopeflow version, config hash, inputs ...), stored as
        the root's ``scopeflow`` attribute.
    positions : mapping, optional
        FOV name -> (row, column) stage-grid index (see :func:`plate_layout`).
    name : str, optional
        Plate name (default: the store name without ``.ome.zarr``).
    extend : bool
        Keep the store's FOVs (groups, images, labels, places) and add the new ones of
        ``fov_names`` (a later time point), replacing the plate and well metadata atomically
        so that jobs reading the store meanwhile see the old or the new index. A new store
        when there is none, or when one of its FOVs is not in ``fov_names`` or a FOV has no
        grid position.
    """
    path = Path(path)
    if not fov_names:
        raise ValueError(f"{path}: a sample store needs at least one FOV")
    kept = _kept_layout(path, fov_names) if extend and positions else None
    layout = plate_layout(fov_names, positions, keep=kept)
    n_rows = 1 + max(r for r, _, _ in layout.values())
    n_cols = 1 + max(c for _, c, _ in layout.values())
    wells: dict[tuple[int, int], list[str]] = {}
    for fov, (r, c, f) in layout.items():
        wells.setdefault((r, c), []).append(str(f))
    ome = plate_attrs(name or path.name.removesuffix(".ome.zarr").removesuffix(".zarr"),
                      n_rows, n_cols, sorted(wells), max(len(f) for f in wells.values()))
    fovs = {fov: f"{_row_name(r)}/{c + 1}/{f}" for fov, (r, c, f) in layout.items()}
    attrs = {"ome": ome, "scopeflow": dict(provenance), LAYOUT_ATTR: {"fovs": fovs}}
    if kept is None:
        if path.exists():
            shutil.rmtree(path)
        _write_group(path, attrs)
    else:
        _replace_attrs(path, attrs)
    for r, c in sorted(wells):
        well = well_attrs(wells[(r, c)])
        where = path / _row_name(r) / str(c + 1)
        if kept is not None and (where / "zarr.json").is_file():
            _replace_attrs(where, {"ome": well})
            continue
        if not (where.parent / "zarr.json").is_file():
            _write_group(where.parent, {})
        _write_group(where, {"ome": well})
    return path


def plate_attrs(name: str, n_rows: int, n_cols: int, wells: Sequence[tuple[int, int]],
                field_count: int) -> dict:
    """The ``ome`` attribute of the sample store's plate: rows A, B ..., columns 1, 2 ..., the
    wells (row, column indices) and the most fields of a well.

    Written as JSON without importing the NGFF models (an ingest job's start-up); it is the
    ``model_dump`` of ``yaozarrs.v05.Plate`` (tests/test_ome_zarr.py checks it), plus the
    0.4-style ``plate.version`` that strict readers (ome-zarr-models) still expect.
    """
    return {"version": NGFF_VERSION, "plate": {
        "columns": [{"name": str(c + 1)} for c in range(n_cols)],
        "rows": [{"name": _row_name(r)} for r in range(n_rows)],
        "wells": [{"path": f"{_row_name(r)}/{c + 1}", "rowIndex": int(r), "columnIndex": int(c)}
                  for r, c in wells],
        "field_count": int(field_count), "name": name, "version": NGFF_VERSION}}


def well_attrs(fields: Sequence[str]) -> dict:
    """The ``ome`` attribute of a well with these field (image group) paths: the ``model_dump``
    of ``yaozarrs.v05.Well``, as JSON (see :func:`plate_attrs`)."""
    return {"version": NGFF_VERSION, "well": {"images": [{"path": str(f)} for f in fields]}}


def _write_group(group: Path, attrs: Mapping) -> None:
    """A Zarr v3 group: its directory and ``zarr.json`` with ``attrs``."""
    import json

    group.mkdir(parents=True, exist_ok=True)
    doc = {"attributes": dict(attrs), "zarr_format": 3, "node_type": "group"}
    (group / "zarr.json").write_text(json.dumps(doc, indent=2))


def _layout(root: zarr.Group) -> dict[str, str]:
    """FOV name -> group path of an opened sample store (this layout or the older one)."""
    index = root.attrs.get(LAYOUT_ATTR, {}).get("fovs")
    if index is not None:
        return dict(index)
    if "OME" in root:  # stores written before the plate layout: <fov>/ groups, OME/ series
        return {n: n for n in root["OME"].attrs["ome"]["series"]}
    raise KeyError(f"{root.store}: not a scopeflow sample store (no FOV index)")


def fov_names(path: str | Path) -> list[str]:
    """FOV names of a sample store, in acquisition order."""
    return list(fov_paths(path))


def fov_path(path: str | Path, fov: str) -> str:
    """Group path of a FOV's image inside the store (e.g. ``"A/1/0"``).

    Raises
    ------
    KeyError
        If the store has no such FOV, naming the ones it has.
    """
    index = fov_paths(path)
    if fov not in index:
        raise KeyError(f"{path}: no FOV {fov!r}; have {list(index)}")
    return index[fov]


def _root_attrs(path: str | Path) -> dict | None:
    """The attributes in a store root's ``zarr.json`` (Zarr v3, read without importing zarr);
    None when there is no readable one (then the store is read through zarr)."""
    import json

    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    return attrs if isinstance(attrs, dict) else None


def _fov_index(path: str | Path):
    """The FOV index (name -> group path) in a store root's ``zarr.json``, read without zarr;
    None for stores of the older layout."""
    return (_root_attrs(path) or {}).get(LAYOUT_ATTR, {}).get("fovs")


def fov_paths(path: str | Path) -> dict[str, str]:
    """FOV name -> group path of every FOV of a sample store, in acquisition order (read from
    the root's ``zarr.json``; stores of the older layout through zarr)."""
    index = _fov_index(path)
    if index is not None:
        return dict(index)
    import zarr

    return _layout(zarr.open_group(str(path), mode="r"))


def write_image(
    path: str | Path,
    fov: str,
    channels: Mapping[str, np.ndarray],
    pixel_size_um: float,
    *,
    chunk: int = 1024,
    attrs: Mapping | None = None,
    colors: Mapping[str, str] | None = None,
) -> None:
    """Write one FOV as an NGFF multiscale image with the given channels.

    Parameters
    ----------
    path : str or Path
        Sample store created by :func:`create_sample_store`.
    fov : str
        FOV name.
    channels : mapping of str to ndarray
        Channel name -> 2-D float32 image (y, x); all the same shape. The channel list is
        the data's: any names, in this order (axis ``c``).
    pixel_size_um : float
        Pixel size at the sample in micrometres (level 0).
    chunk : int
        Chunk edge in pixels (y and x).
    attrs : mapping, optional
        Extra per-FOV attributes (stage position, source files ...) stored under ``scopeflow``.
    colors : mapping of str to str, optional
        Display colour (hex RGB) per channel name; default
        :data:`scopeflow.io.ngff_write.CHANNEL_COLORS`, else white.
    """
    from yaozarrs import v05

    names = list(channels)
    images = [np.asarray(channels[n], dtype=np.float32) for n in names]
    shape = images[0].shape
    if any(img.shape != shape for img in images):
        raise ValueError(f"{fov}: channels differ in shape: {[img.shape for img in images]}")
    dest = Path(path) / fov_path(path, fov)
    n_levels = levels_for(shape)
    image = v05.Image(multiscales=[multiscale_model(fov, n_levels, pixel_size_um, "image")],
                      omero=omero_model(names, images, colors))
    extra = {"scopeflow": {"channels": names, "pixel_size_um": pixel_size_um, **dict(attrs or {})}}
    c = min(chunk, shape[0]), min(chunk, shape[1])
    arrays = create_group(dest, image, level_shapes((len(names), *shape), n_levels), "float32",
                          (1, *c), extra)
    for k, level in enumerate(images):  # channel by channel: no stacked copy of the FOV
        for i in range(n_levels):
            arrays[str(i)][k] = level
            if i + 1 < n_levels:
                level = downsample_mean(level)


def _image_group(path: str | Path, fov: str, mode: str = "r") -> zarr.Group:
    import zarr

    root = zarr.open_group(str(path), mode=mode)
    index = _layout(root)
    if fov not in index:
        raise KeyError(f"{path}: no FOV {fov!r}; have {list(index)}")
    return root[index[fov]]


def labels_array(
    path: str | Path, fov: str, name: str = "cells", *, chunk: int = 1024, attrs: Mapping | None = None,
) -> zarr.Array:
    """Level 0 of ``<fov>/labels/<name>``, shape (1, y, x) uint32, created when missing.

    The label image is created with its NGFF metadata and all its (empty) pyramid levels;
    an existing level 0 of the right shape is returned as it is (so an interrupted
    segmentation can resume into it). Call :func:`finish_labels` once it is complete to
    fill the pyramid levels.
    """
    import zarr
    from yaozarrs import v05

    image = _image_group(path, fov, mode="a")
    image_dir = Path(path) / fov_path(path, fov)
    labels_group = image.require_group("labels")
    existing = labels_group.attrs.get("ome", {}).get("labels", [])
    if name not in existing:
        labels_group.attrs.update(
            {"ome": ome_dict(v05.LabelsGroup(labels=sorted(set(existing) | {name})))})
    shape = image["0"].shape[1:]
    dest = image_dir / "labels" / name
    if (dest / "0" / "zarr.json").exists():
        group = zarr.open_group(str(dest), mode="a")
        if tuple(group["0"].shape) == (1, *shape):
            if attrs is not None:
                group.attrs.update({"scopeflow": dict(attrs)})
            return group["0"]
    ps = float(image.attrs["scopeflow"]["pixel_size_um"])
    n_levels = len(image.attrs["ome"]["multiscales"][0]["datasets"])
    label = v05.LabelImage(multiscales=[multiscale_model(name, n_levels, ps, "label")],
                           image_label=v05.ImageLabel(source=v05.LabelSource(image="../../")))
    c = min(chunk, shape[0]), min(chunk, shape[1])
    arrays = create_group(dest, label, level_shapes((1, *shape), n_levels), "uint32", (1, *c),
                      {"scopeflow": dict(attrs)} if attrs is not None else None)
    return arrays["0"]


def finish_labels(path: str | Path, fov: str, name: str = "cells") -> None:
    """Fill the nearest-neighbour (strided) pyramid levels of a label image from level 0.

    Level 0 is read once (a strided zarr read decodes every chunk: once per level before);
    images over 64 Mpx are read one band of chunk rows at a time, bounding memory.
    """
    group = _image_group(path, fov, mode="a")["labels"][name]
    level0 = group["0"]
    n_levels = len(group.attrs["ome"]["multiscales"][0]["datasets"])
    if n_levels < 2:
        return
    _, h, w = level0.shape
    top = 2 ** (n_levels - 1)  # bands start on a multiple of every level's stride
    band = h if h * w <= 64 * 2**20 else max(top, level0.chunks[1] // top * top)
    for y0 in range(0, h, band):
        block = np.asarray(level0[:, y0 : y0 + band])
        for i in range(1, n_levels):
            target, s = group[str(i)], 2**i
            part = block[:, ::s, ::s][:, : target.shape[1] - y0 // s, : target.shape[2]]
            target[:, y0 // s : y0 // s + part.shape[1]] = part


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
        FOV name (its image must exist).
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


def _plain_image(path: str | Path, fov: str) -> tuple[Path, dict] | None:
    """Folder and attributes of a FOV's image group read from the JSON files alone (the
    root's FOV index and the group's ``zarr.json``), or None (then zarr reads it)."""
    import json

    index = _fov_index(path)
    if not isinstance(index, dict) or fov not in index:
        return None
    image = Path(path) / index[fov]
    try:
        attrs = json.loads((image / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    return (image, attrs) if isinstance(attrs, dict) else None


def _plain_channel(path: str | Path, fov: str, channel: str, level: int,
                   window: tuple[slice, slice] | None) -> np.ndarray | None:
    """:func:`read_channel` of a store written by scopeflow (axes c, y, x; plain Zarr v3
    arrays, :mod:`scopeflow.io.zarr_plain`) without zarr, or None for any other store."""
    from scopeflow.io.zarr_plain import read_region

    found = _plain_image(path, fov)
    if found is None:
        return None
    image, attrs = found
    names = (attrs.get("scopeflow") or {}).get("channels") or []
    multiscales = (attrs.get("ome") or {}).get("multiscales") or [{}]
    datasets, axes = multiscales[0].get("datasets") or [], [a.get("name") for a in multiscales[0].get("axes") or []]
    if channel not in names or sorted(axes) != ["c", "x", "y"] or not 0 <= level < len(datasets):
        return None
    c = next(k for k, n in enumerate(names) if str(n).lower() == channel.lower())  # as image_channel
    ys, xs = window if window is not None else (slice(None), slice(None))
    return read_region(image / datasets[level]["path"], tuple({"c": c, "y": ys, "x": xs}[a] for a in axes))


def read_channel(path: str | Path, fov: str, channel: str, level: int = 0,
                 window: tuple[slice, slice] | None = None) -> zarr.Array | np.ndarray:
    """Return the 2-D (y, x) array of one channel of a FOV at pyramid ``level``; only the
    (y, x) ``window`` (a pair of slices) when given, reading only its chunks.

    The stores scopeflow writes are read without zarr (:mod:`scopeflow.io.zarr_plain`: the
    same values, a numpy array); others through zarr.

    Raises
    ------
    KeyError
        If the FOV or the channel does not exist, naming what does.
    """
    plain = _plain_channel(path, fov, channel, level, window)
    if plain is not None:
        return plain
    from scopeflow.io.ngff_image import image_channel

    group = _image_group(path, fov)
    names = group.attrs["scopeflow"]["channels"]
    if channel not in names:
        raise KeyError(f"{path}/{fov}: no channel {channel!r}; have {names}")
    return image_channel(group, channel, level, window=window)  # the reader of any NGFF image


def read_labels(path: str | Path, fov: str, name: str = "cells", level: int = 0,
                window: tuple[slice, slice] | None = None) -> np.ndarray:
    """Return the (y, x) uint32 label image of a FOV; only the (y, x) ``window`` (a pair of
    slices) when given, reading only its chunks (without zarr where the store is one
    scopeflow writes, :mod:`scopeflow.io.zarr_plain`)."""
    from scopeflow.io.zarr_plain import read_region

    found = _plain_image(path, fov)
    index = (0, *window) if window is not None else (0, slice(None), slice(None))
    plain = read_region(found[0] / "labels" / name / str(level), index) if found is not None else None
    if plain is not None:
        return plain
    arr = _image_group(path, fov)["labels"][name][str(level)]
    return arr[0] if window is None else arr[(0, *window)]


def fov_attrs(path: str | Path, fov: str) -> dict:
    """The ``scopeflow`` attributes of a FOV image (pixel size, channels, stage position ...);
    read from the group's ``zarr.json`` without zarr in a store written by scopeflow."""
    found = _plain_image(path, fov)
    if found is not None and isinstance(found[1].get("scopeflow"), dict):
        return dict(found[1]["scopeflow"])
    return dict(_image_group(path, fov).attrs["scopeflow"])


def store_attrs(path: str | Path) -> dict:
    """The ``scopeflow`` provenance attributes of a sample store (read from the root's
    ``zarr.json``, without importing zarr; other stores through zarr)."""
    attrs = _root_attrs(path)
    if attrs is not None:
        return dict(attrs.get("scopeflow", {}))
    import zarr

    root = zarr.open_group(str(path), mode="r")
    return dict(root.attrs.get("scopeflow", {}))


def store_complete(path: str | Path) -> dict:
    """Check that every FOV of a store has its image and, where segmented, its full labels.

    Returns
    -------
    dict
        ``{"fovs": n, "labels": n with labels/cells, "ngff_version": "0.5"}``.

    Raises
    ------
    ValueError
        Naming the first FOV whose image or label pyramid is missing.
    """
    import zarr

    root = zarr.open_group(str(path), mode="r")
    index = _layout(root)
    n_labels = 0
    for fov, group_path in index.items():
        if group_path not in root or "multiscales" not in root[group_path].attrs.get("ome", {}):
            raise ValueError(f"{path}: FOV {fov!r} has no image at {group_path}; rerun its dpc job")
        image = root[group_path]
        levels = [d["path"] for d in image.attrs["ome"]["multiscales"][0]["datasets"]]
        if "labels" in image:
            for name in image["labels"].attrs.get("ome", {}).get("labels", []):
                missing = [lv for lv in levels if lv not in image["labels"][name]]
                if missing:
                    raise ValueError(f"{path}: labels/{name} of FOV {fov!r} lacks levels {missing}")
            n_labels += 1
    return {"fovs": len(index), "labels": n_labels, "ngff_version": NGFF_VERSION}


def mark_complete(path: str | Path, flag: str | Path, summary: Mapping | None = None) -> dict:
    """Write the completion flag of a store *beside* it (never inside: no foreign files).

    The flag (JSON: store name, NGFF version, ``summary``) is written last and atomically,
    after the store's content is checked (:func:`store_complete` for a sample store); a
    workflow rule declares the flag, not the store, as its output.
    """
    import json

    import zarr

    from scopeflow.io.atomic import write_text

    path, flag = Path(path), Path(flag)
    root = zarr.open_group(str(path), mode="r")
    info = store_complete(path) if LAYOUT_ATTR in root.attrs or "OME" in root else {
        "ngff_version": root.attrs.get("ome", {}).get("version")}
    record = {"store": path.name, **info, **dict(summary or {})}
    write_text(flag, json.dumps(record, indent=2, sort_keys=True, default=str))
    return record
