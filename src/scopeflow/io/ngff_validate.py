"""Check OME-Zarr stores with the ecosystem's own validators (ome-zarr-models, yaozarrs).

Used by the tests and by ``benchmarks/ngff_validate.py``; the validators are test
dependencies (``pip install -e ".[test]"``), imported only when a check runs.

Every Zarr group of a store that carries ``ome`` (0.5) or NGFF (0.4) metadata is
checked on its own: ``ome-zarr-models`` opens it with its strict models (its
``ValidationWarning`` turned into an error, as its ``validate`` command does), and
``yaozarrs`` validates the structure under it (``validate_zarr_store``, its
``StorageValidationWarning`` recorded as a warning).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GroupReport:
    """Verdicts of one Zarr group."""

    path: str
    kind: str
    models_error: str | None = None
    yaozarrs_error: str | None = None
    yaozarrs_warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.models_error is None and self.yaozarrs_error is None and not self.yaozarrs_warnings


def _ome_attrs(group_dir: Path) -> dict | None:
    """The NGFF attributes of a group directory (``ome`` of Zarr v3, or the v2 ``.zattrs``)."""
    meta = group_dir / "zarr.json"
    if meta.is_file():
        doc = json.loads(meta.read_text())
        if doc.get("node_type") != "group":
            return None
        return doc.get("attributes", {}).get("ome")
    zattrs = group_dir / ".zattrs"
    if (group_dir / ".zgroup").is_file():
        attrs = json.loads(zattrs.read_text()) if zattrs.is_file() else {}
        keys = {"multiscales", "plate", "well", "labels", "image-label", "bioformats2raw.layout"}
        return attrs if keys & set(attrs) else None
    return None


def _kind(attrs: dict) -> str:
    for key in ("plate", "well", "image-label", "multiscales", "labels", "bioformats2raw.layout"):
        if key in attrs:
            return {"bioformats2raw.layout": "bioformats2raw", "image-label": "label image",
                    "multiscales": "image"}.get(key, key)
    return "other"


def ome_groups(store: str | Path) -> list[Path]:
    """Every group directory under (and including) ``store`` that holds NGFF metadata."""
    store = Path(store)
    out = []
    for meta in sorted([*store.rglob("zarr.json"), *store.rglob(".zgroup")]):
        d = meta.parent
        if d not in out and _ome_attrs(d) is not None:
            out.append(d)
    return out


def validate_group(group_dir: str | Path) -> GroupReport:
    """Validate one NGFF group with ome-zarr-models (strict) and yaozarrs."""
    import ome_zarr_models
    import yaozarrs
    from ome_zarr_models.exceptions import ValidationWarning as ModelsWarning

    group_dir = Path(group_dir)
    report = GroupReport(str(group_dir), _kind(_ome_attrs(group_dir) or {}))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ModelsWarning)
            ome_zarr_models.open_ome_zarr(str(group_dir))
    except Exception as e:  # noqa: BLE001 - the validator's verdict, recorded
        report.models_error = f"{type(e).__name__}: {e}"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yaozarrs.validate_zarr_store(str(group_dir))
        report.yaozarrs_warnings = [str(w.message) for w in caught
                                    if "yaozarrs" in type(w.message).__module__]
    except Exception as e:  # noqa: BLE001
        report.yaozarrs_error = f"{type(e).__name__}: {e}"
    return report


def validate_store(store: str | Path) -> list[GroupReport]:
    """Validate every NGFF group of a store (see :func:`validate_group`)."""
    return [validate_group(g) for g in ome_groups(store)]


def foreign_files(store: str | Path) -> list[Path]:
    """Files inside a Zarr v3 store that are not part of its hierarchy.

    Everything in a store must be a ``zarr.json`` or a chunk of an array (a file under an
    array's folder); anything else (a workflow manager's timestamp, an editor's backup)
    makes zarr-python warn that it is "not recognized as a component of a Zarr hierarchy".
    """
    store = Path(store)
    arrays = set()
    for meta in store.rglob("zarr.json"):
        if json.loads(meta.read_text()).get("node_type") == "array":
            arrays.add(meta.parent)
    out = []
    for f in store.rglob("*"):
        if f.is_dir() or f.name == "zarr.json":
            continue
        if not any(a in f.parents for a in arrays):
            out.append(f)
    return sorted(out)
