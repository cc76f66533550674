"""Reading NGFF (OME-Zarr 0.4 and 0.5) images, scopeflow's own and anyone else's.

The same code reads a channel of a scopeflow sample store (:func:`scopeflow.io.ome_zarr.read_channel`)
and a DPC image another program wrote, so a ``smear_dpc`` sample may be an OME-Zarr: a single
image, a plate (every field of every well is a FOV), a bioformats2raw collection, or a folder
of such stores. The metadata are parsed and validated by the ``yaozarrs`` models (the library
the writer uses); the pixels are read with zarr-python.

The listing functions (:func:`is_ngff`, :func:`list_images`) read JSON only, so sample
discovery stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

from scopeflow.errors import InputImageError

#: Factor from an NGFF space unit to micrometres.
UNIT_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "angstrom": 1e-4,
           "centimeter": 1e4, "picometer": 1e-6}


def _attrs(group_dir: Path) -> dict | None:
    """The NGFF attributes of a group folder: ``ome`` of Zarr v3, the ``.zattrs`` of v2."""
    meta = group_dir / "zarr.json"
    if meta.is_file():
        try:
            doc = json.loads(meta.read_text())
        except ValueError:
            return None
        if doc.get("node_type") != "group":
            return None
        return doc.get("attributes", {}).get("ome", {})
    if (group_dir / ".zgroup").is_file():
        zattrs = group_dir / ".zattrs"
        return json.loads(zattrs.read_text()) if zattrs.is_file() else {}
    return None


def is_ngff(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr group holding NGFF images (an image, plate or collection)."""
    attrs = _attrs(Path(path)) if Path(path).is_dir() else None
    return bool(attrs) and bool({"multiscales", "plate", "bioformats2raw.layout"} & set(attrs))


def list_images(path: str | Path) -> list[str]:
    """Sub-paths of the NGFF images under a store: ``[""]`` for an image, ``"A/1/0"`` ... for
    the fields of a plate, the series of a bioformats2raw collection (label images excluded).
    """
    root = Path(path)
    attrs = _attrs(root) or {}
    if "multiscales" in attrs:
        return [""]
    out = []
    if "plate" in attrs:
        for well in attrs["plate"].get("wells", []):
            well_attrs = _attrs(root / well["path"]) or {}
            for image in well_attrs.get("well", {}).get("images", []):
                out.append(f"{well['path']}/{image['path']}")
        return out
    if "bioformats2raw.layout" in attrs:
        series = (_attrs(root / "OME") or {}).get("series")
        if series is None:  # no series list: the numbered groups 0, 1, ...
            series, n = [], 0
            while _attrs(root / str(n)) is not None:
                series.append(str(n))
                n += 1
        return [s for s in series if "multiscales" in (_attrs(root / s) or {})]
    return out


def _image_model(attrs: dict, where: str):
    """Parse and validate image metadata with the yaozarrs models (0.5, else 0.4)."""
    from pydantic import ValidationError
    from yaozarrs import v04, v05

    try:
        if "ome" in attrs:
            return v05.Image.model_validate(attrs["ome"])
        return v04.Image.model_validate(attrs)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputImageError(f"{where}: not a valid NGFF image ({loc}: {first['msg']}); "
                              "write it as OME-Zarr 0.4 or 0.5") from exc


def image_channel(group, channel: str | None = "dpc", level: int = 0, *, strict: bool = True,
                  window: tuple[slice, slice] | None = None):
    """One channel of an NGFF image group as a lazy 2-D (y, x) zarr view.

    Parameters
    ----------
    group : zarr.Group
        An NGFF image group (0.4 or 0.5).
    channel : str or None
        Channel label (``omero`` channel labels, or scopeflow's ``channels`` attribute),
        matched case-insensitively. ``None``: the only channel.
    level : int
        Pyramid level (index into ``multiscales[0].datasets``).
    strict : bool
        If False, an image with a single channel (or no ``c`` axis) gives it whatever its
        label (a DPC image someone else wrote may call it anything).
    window : (slice, slice), optional
        The (y, x) region to read (only its chunks are read); default the whole plane.

    Raises
    ------
    InputImageError
        If the metadata are invalid, the channel is not there (naming those that are), or a
        ``t`` / ``z`` axis has more than one plane.
    """
    where = str(getattr(group.store, "root", "")) + ("/" + group.path if group.path else "")
    attrs = group.attrs.asdict()
    model = _image_model(attrs, where)
    ms = model.multiscales[0]
    axes = [a.name for a in ms.axes]
    arr = group[ms.datasets[level].path]
    names = [c.label for c in model.omero.channels] if model.omero else []
    names = (attrs.get("scopeflow") or {}).get("channels", names)
    index = []
    region = {"y": window[0], "x": window[1]} if window is not None else {}
    for ax, size in zip(axes, arr.shape):
        if ax in ("y", "x"):
            index.append(region.get(ax, slice(None)))
        elif ax == "c":
            if size == 1 and (not strict or channel is None or not names):
                index.append(0)
                continue
            found = [k for k, n in enumerate(names) if channel is not None and str(n).lower() == channel.lower()]
            if not found:
                raise InputImageError(f"{where}: no channel {channel!r}; have {names or size}; "
                                      "label the DPC channel 'dpc' in its omero metadata")
            index.append(found[0])
        elif size == 1:
            index.append(0)
        else:
            raise InputImageError(f"{where}: axis {ax!r} has {size} planes; scopeflow reads 2-D "
                                  "DPC fields of view (one plane per image)")
    if "y" not in axes or "x" not in axes:
        raise InputImageError(f"{where}: axes {axes} lack y and x")
    if window is None and all(isinstance(i, slice) for i in index):
        return arr
    return arr[tuple(index)]


def pixel_size_um(group) -> float | None:
    """Level-0 pixel size (µm) from an NGFF image's y scale, None when its unit is unknown."""
    attrs = group.attrs.asdict()
    model = _image_model(attrs, str(group.path))
    ms = model.multiscales[0]
    axes = list(ms.axes)
    k = [a.name for a in axes].index("y")
    scale = 1.0
    for t in [*(ms.datasets[0].coordinateTransformations), *(ms.coordinateTransformations or [])]:
        if getattr(t, "type", None) == "scale" and getattr(t, "scale", None):
            scale *= float(t.scale[k])
    unit = axes[k].unit
    return scale * UNIT_UM[unit] if unit in UNIT_UM else None


def open_image(path: str | Path):
    """Open the NGFF image group at ``path`` (``store`` or ``store/A/1/0``) read-only."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any zarr failure: one line naming the path
        raise InputImageError(f"{path}: cannot open as a Zarr group ({exc})") from exc


def read_dpc(path: str | Path, channel: str = "dpc"):
    """The DPC channel of an NGFF image as a float32 ndarray (y, x); integers scaled to [0, 1].

    0.5 of full scale is no phase gradient, as for DPC image files (see
    :func:`scopeflow.io.images.to_unit_float`).
    """
    import numpy as np

    from scopeflow.io.images import to_unit_float

    return to_unit_float(np.asarray(image_channel(open_image(path), channel, strict=False)))
