"""Record the stage outputs of a small pipeline run as the regression reference of
``tests/test_pipeline_reference.py`` (labels checksums, table values, DPC/phase statistics).

Run once with the code whose outputs must be kept (it was run at the commit before the
issue-20 speed work), from the repository root:

    python tests/data/make_pipeline_reference.py

Inputs: a simulated 2-FOV Octopi acquisition (smear_raw, 640², seed 3; the sha256 of its
raw frames is recorded so that a changed simulator is told apart from a changed pipeline)
and the real Octopi DPC image ``octopi_rbc_dpc_m2unet/images/dpc_1024_00.png`` of
../shared/data (smear_dpc).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "pipeline_reference"


def run_case(work: Path, kind: str, src: Path, *, method: str, na: float | None, **measure_kwargs):
    """Run ingest -> dpc -> segment -> measure on ``src``; return (record, cells, fovs).

    ``measure_kwargs`` go to ``measure_store`` (the reference was recorded without any:
    then every focus metric was computed)."""
    from scopeflow import smear as pipeline
    from scopeflow.io import ome_zarr

    d = work / kind
    d.mkdir(parents=True, exist_ok=True)
    pipeline.ingest(kind, src, d / "fovs.tsv", d / "ff.npz", pixel_size_um=0.333 if kind == "smear_dpc" else None,
                    na=na)
    pipeline.create_store(d / "fovs.tsv", d / "s.ome.zarr")
    pipeline.write_images(d / "fovs.tsv", d / "ff.npz", d / "s.ome.zarr", d / "dpc.json")
    kwargs = {"threads": 2} if method == "unet" else {}
    pipeline.segment_store(d / "s.ome.zarr", d / "seg.json", method=method, predictor_kwargs=kwargs, threads=2)
    pipeline.measure_store(d / "s.ome.zarr", d / "seg.json", d / "cells.parquet", d / "fovs.parquet",
                           sample=kind, **measure_kwargs)
    out = {"fovs": {}}
    for fov in ome_zarr.fov_names(d / "s.ome.zarr"):
        labels = np.ascontiguousarray(ome_zarr.read_labels(d / "s.ome.zarr", fov), dtype=np.uint32)
        rec = {"labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
               "n_labels": int(labels.max())}
        attrs = ome_zarr.fov_attrs(d / "s.ome.zarr", fov)
        for ch in attrs["channels"]:
            a = np.asarray(ome_zarr.read_channel(d / "s.ome.zarr", fov, ch), dtype=np.float64)
            rec[ch] = {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                       "max": float(a.max()), "corner": a[:4, :4].round(6).tolist()}
        out["fovs"][fov] = rec
    import pandas as pd

    return out, pd.read_parquet(d / "cells.parquet"), pd.read_parquet(d / "fovs.parquet")


def simulated_acquisition(root: Path) -> tuple[Path, str]:
    """The simulated 2-FOV acquisition and the sha256 of its raw frames."""
    from scopeflow.simulate import simulate_acquisition

    acq = simulate_acquisition(root / "acq", ny=1, nx=2, shape=(640, 640), seed=3)
    h = hashlib.sha256()
    for p in sorted(acq.rglob("*.bmp")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return acq, h.hexdigest()


def dpc_source(shared: Path) -> Path:
    return shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_1024_00.png"


def main() -> None:
    import os

    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", HERE.parents[1].parent / "shared" / "data"))
    OUT.mkdir(exist_ok=True)
    record = {}
    with tempfile.TemporaryDirectory() as tmp:
        acq, record["smear_raw_inputs_sha256"] = simulated_acquisition(Path(tmp))
        for kind, src, na in (("smear_raw", acq, None), ("smear_dpc", dpc_source(shared), 0.4)):
            record[kind], cells, fovs = run_case(Path(tmp), kind, src, method="unet", na=na)
            cells.to_csv(OUT / f"{kind}_cells.csv", index=False, float_format="%.9g")
            fovs.to_csv(OUT / f"{kind}_fovs.csv", index=False, float_format="%.9g")
    (OUT / "reference.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
