"""Tables stage of a smear sample: its shard tables merged, QC applied (it needs sample-wide
medians), and the per-sample summary and QC record written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.smear.stage_common import atomic_json

if TYPE_CHECKING:
    import pandas as pd


def merge_tables(
    cell_parts: Sequence[str | Path],
    fov_parts: Sequence[str | Path],
    zarr_path: str | Path,
    out_cells: str | Path,
    out_fovs: str | Path,
    out_sample: str | Path,
    *,
    sample: str,
    provenance: Mapping | None = None,
    qc: Mapping | None = None,
    out_qc: str | Path | None = None,
) -> pd.DataFrame:
    """Concatenate a sample's shard tables into its cell and FOV tables, apply QC, summarise.

    QC needs sample-wide medians, so it runs here and not per shard: per-FOV verdicts
    (:func:`scopeflow.smear.qc.gates.fov_verdicts`), per-cell flags
    (:func:`scopeflow.smear.qc.flags.flag_cells`), the sample gate
    (:func:`scopeflow.smear.qc.gates.sample_gate`, also written to ``out_qc`` as JSON). The
    sample's median statistics use the ``qc_pass`` cells.

    Provenance = the run's record, the store's record and the segmentation record of the
    shards (method, parameters, model sha256).
    """
    import pandas as pd

    from scopeflow.smear import measure
    from scopeflow.io import ome_zarr, tables
    from scopeflow.smear.qc.flags import flag_cells
    from scopeflow.smear.qc.gates import fov_verdicts, sample_gate
    from scopeflow.smear.qc.params import QCParams

    params = QCParams.from_config(qc)
    cells = pd.concat([tables.read_table(p) for p in cell_parts], ignore_index=True)
    fovs = pd.concat([tables.read_table(p) for p in fov_parts], ignore_index=True)
    stored, measured = ome_zarr.fov_names(zarr_path), sorted(fovs["fov"].astype(str))
    if sorted(stored) != measured:  # never record a series list that disagrees with the images
        missing = sorted(set(stored) ^ set(measured))
        raise ScopeflowError(
            f"{zarr_path}: its series list ({len(stored)} FOVs) differs from the FOVs measured "
            f"({len(measured)}; e.g. {missing[0]}); the input changed during the run, rerun the workflow"
        )
    fovs = fov_verdicts(fovs, params)
    cells = flag_cells(cells, params, fovs=fovs)
    per_fov = cells.groupby(cells["fov"].astype(str))["qc_pass"].sum() if len(cells) else pd.Series(dtype=int)
    fovs["n_cells_qc_pass"] = fovs["fov"].astype(str).map(per_fov).fillna(0).astype("int64")
    gate = sample_gate(fovs, cells, params)
    prov = dict(provenance or {})
    prov["store"] = ome_zarr.store_attrs(zarr_path)
    seg = tables.read_provenance(cell_parts[0]).get("segmentation", {}) if cell_parts else {}
    prov["segmentation"] = seg
    if seg.get("model_sha256"):
        prov.setdefault("models", {})["segmentation"] = seg["model_sha256"]
    prov["qc"] = params.as_dict()
    rows = [measure.summarize_sample(fovs, cells, sample=sample, gate=gate)]
    regions = (fovs["region"].fillna("").astype(str) if "region" in fovs.columns
               else pd.Series(dtype=str))
    for region in sorted(set(regions) - {""}):  # one row per region (a well: a donor, a condition)
        f_r = fovs.loc[regions == region]
        c_r = cells.loc[cells["fov"].astype(str).isin(set(f_r["fov"].astype(str)))]
        rows.append(measure.summarize_sample(f_r, c_r, sample=sample, region=region,
                                             gate=sample_gate(f_r, c_r, params)))
    summary = pd.DataFrame(rows)
    if out_qc is not None:
        atomic_json(_qc_record(sample, fovs, cells, gate, params.as_dict()), out_qc)
    tables.write_table(fovs, out_fovs, prov)
    tables.write_table(summary, out_sample, prov)
    tables.write_table(cells, out_cells, prov)
    return summary


def _qc_record(sample: str, fovs: pd.DataFrame, cells: pd.DataFrame, gate: Mapping, params: Mapping) -> dict:
    """The sample's ``qc.json``: gate, counts, per-FOV verdicts and the thresholds used."""
    def num(v):
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v

    fov_rows = [
        {"fov": str(r["fov"]), "fov_pass": bool(r["fov_pass"]), "focus_pass": bool(r["focus_pass"]),
         "count_pass": bool(r["count_pass"]), "focus_ratio": num(float(r["focus_ratio"])),
         "n_cells": int(r["n_cells"]), "n_cells_qc_pass": int(r["n_cells_qc_pass"]),
         "reason": str(r["fov_qc_reason"])}
        for r in fovs.to_dict("records")
    ]
    return {
        "sample": sample,
        "qc_gate": gate["qc_gate"],
        "qc_gate_reason": gate["qc_gate_reason"],
        "n_cells": int(len(cells)),
        "n_cells_qc_pass": gate["n_cells_qc_pass"],
        "fraction_qc_pass": num(gate["fraction_qc_pass"]),
        "n_fovs": int(len(fovs)),
        "n_fovs_pass": gate["n_fovs_pass"],
        "reason_counts": gate["reason_counts"],
        "fovs": fov_rows,
        "thresholds": dict(params),
    }


def sample_provenance(config: Mapping, inputs: Sequence[str | Path], **extra) -> dict:
    """Provenance record for a sample's outputs."""
    from scopeflow.provenance import make_provenance

    return make_provenance(config, inputs=inputs, **extra)
