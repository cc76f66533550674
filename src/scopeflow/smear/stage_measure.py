"""Measure stage of a smear sample: every cell of the segmented FOVs of a shard, and each FOV's
focus metrics, into the shard's cell and FOV tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.smear.fov_table import RAW_ATTRS
from scopeflow.smear.stage_common import OVERLAP_MAX_PIXELS

if TYPE_CHECKING:
    import pandas as pd


def measure_store(
    zarr_path: str | Path,
    segmentation_json: str | Path,
    out_cells: str | Path,
    out_fovs: str | Path,
    *,
    sample: str,
    fovs: Sequence[str] | None = None,
    classifier: bool = False,
    focus_metrics: Sequence[str] | None = None,
    threads: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure every cell of segmented FOVs; write the cell and FOV tables (of a shard).

    The FOV rows get the tiled focus metrics ``focus_metrics`` of :mod:`scopeflow.smear.qc.focus`
    (``focus_<name>``; default only :data:`~scopeflow.smear.qc.focus.DEFAULT_FOCUS_METRIC`, the
    others NaN). The Laplacian of the DPC is computed once per FOV, for the cells' focus
    and the FOV's ``focus``. The first FOV is read while the measuring code loads. With
    ``threads`` (default: the ``measure.threads`` config default) > 1 that many FOVs are
    read and measured at once (the compiled kernels release the GIL; FOVs over
    :data:`~scopeflow.smear.stage_common.OVERLAP_MAX_PIXELS` one at a time, bounding memory);
    with 1 the next FOV is read while the current one is measured. The tables do not
    depend on ``threads``.
    With ``classifier`` the cells get ``p_good`` from the learned quality classifier
    (:func:`scopeflow.qc.cell_classifier.predict_good`, which needs the pixels, hence here
    and not at merge time).
    """
    from concurrent.futures import ThreadPoolExecutor

    from scopeflow.io import ome_zarr

    seg = json.loads(Path(segmentation_json).read_text())
    names = list(fovs) if fovs is not None else ome_zarr.fov_names(zarr_path)

    def read(fov):
        attrs = ome_zarr.fov_attrs(zarr_path, fov)
        dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc"))
        phase = (np.asarray(ome_zarr.read_channel(zarr_path, fov, "phase"))
                 if "phase" in attrs["channels"] else None)
        return attrs, dpc, phase, ome_zarr.read_labels(zarr_path, fov)

    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-read") as early:
        # the first FOV is read while the measuring code (pandas, the compiled kernels) loads
        box = [early.submit(read, names[0])] if names else []
        import pandas as pd

        from scopeflow.io import tables
        from scopeflow.smear import measure
        from scopeflow.smear.filters import laplace
        from scopeflow.smear.qc.focus import DEFAULT_FOCUS_METRIC, tiled_focus_metrics

        metrics = [DEFAULT_FOCUS_METRIC] if focus_metrics is None else list(focus_metrics)
        predict_good = _quality_classifier() if classifier else None

    def one(fov, fov_data=None):
        attrs, dpc, phase, labels = read(fov) if fov_data is None else fov_data
        ps = float(attrs["pixel_size_um"])
        lap = laplace(dpc)
        cells = measure.measure_cells(labels, dpc, phase, ps, sample=sample, fov=fov, lap=lap)
        if predict_good is not None:
            cells["p_good"] = _p_good(predict_good, dpc, labels, cells["cell_id"].to_numpy(), fov)
        extra = {k: attrs.get(k) for k in (*RAW_ATTRS, "saturated_fraction_raw")}
        extra.update(tiled_focus_metrics(dpc, names=metrics, compiled=True))
        row = measure.summarize_fov(cells, sample=sample, fov=fov, shape=labels.shape,
                                    pixel_size_um=ps, focus=measure.fov_focus(dpc, lap), extra=extra)
        return cells, row

    if threads is None:
        from scopeflow.config_schema import schema_defaults

        threads = schema_defaults("measure")["threads"]
    results = _map_fovs(one, read, names, box, max(1, int(threads)), parallel=predict_good is None)
    cell_tables = [c for c, _ in results]
    fov_rows = [r for _, r in results]
    if not cell_tables:  # an empty shard (the FOV count changed since planning)
        cell_tables = [measure.measure_cells(np.zeros((1, 1), np.uint32), np.zeros((1, 1)), None, 1.0)]
        if predict_good is not None:
            cell_tables[0]["p_good"] = np.zeros(0, np.float64)
    cells = pd.concat(cell_tables, ignore_index=True)
    fov_table = pd.DataFrame(fov_rows, columns=list(measure.FOV_COLUMNS))
    for col in ("t", "i", "j", "k", "n_z", "bit_depth"):
        fov_table[col] = pd.to_numeric(fov_table[col]).astype("Int64")
    for col in ("x_mm", "y_mm", "z_um", "saturated_fraction_raw"):
        fov_table[col] = pd.to_numeric(fov_table[col]).astype("float64")
    for col in ("region", "z_selection", "z_focus_scores", "objective"):
        fov_table[col] = fov_table[col].fillna("").astype(str)
    prov = {"segmentation": {k: seg.get(k) for k in ("method", "chunk", "params", "model_sha256")}}
    tables.write_table(fov_table, out_fovs, prov)
    tables.write_table(cells, out_cells, prov)
    return cells, fov_table


def _map_fovs(one, read, names: Sequence[str], box: list, threads: int, parallel: bool) -> list:
    """``[one(fov, read(fov)) for fov in names]``, FOVs in ``threads`` worker threads when
    ``parallel``; ``box`` holds the future of ``read(names[0])`` (popped, so that no
    reference keeps the FOV's arrays alive after it is measured).

    FOVs over :data:`~scopeflow.smear.stage_common.OVERLAP_MAX_PIXELS` pixels (judged on the
    first) are measured one at a time and read one at a time (bounding memory to about one
    FOV's arrays); smaller ones serially (``threads`` 1, or not ``parallel``) with the next
    FOV read while the current one is measured, else by a pool of ``threads`` workers that
    each read and measure one FOV, at most ``threads`` in flight. Results and errors come in
    the order of ``names``.
    """
    if not names:
        return []
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    cur = box.pop().result()
    small = cur[1].size <= OVERLAP_MAX_PIXELS
    out = []
    if threads >= 2 and parallel and small and len(names) > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="scopeflow-measure") as pool:
            pending = deque([pool.submit(one, names[0], cur)])
            del cur
            for fov in names[1:]:
                if len(pending) >= threads:
                    out.append(pending.popleft().result())
                pending.append(pool.submit(one, fov, None))
            while pending:
                out.append(pending.popleft().result())
        return out
    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-read") as pool:
        for k, fov in enumerate(names):
            last = k + 1 == len(names)
            nxt = pool.submit(read, names[k + 1]) if small and not last else None
            out.append(one(fov, cur))
            del cur  # freed before a large FOV's successor is read
            if not last:
                cur = nxt.result() if nxt is not None else read(names[k + 1])
    return out


def _quality_classifier():
    """``predict_good`` of the learned cell-quality classifier, or a one-line error.

    Integration point of :mod:`scopeflow.qc.cell_classifier` (``qc.classifier: true``).
    """
    try:
        from scopeflow.qc.cell_classifier import predict_good
    except ImportError as exc:
        raise ScopeflowError(
            f"config key qc.classifier: the cell-quality classifier is not available ({exc}); "
            "set qc.classifier: false"
        ) from exc
    return predict_good


def _p_good(predict_good, dpc: np.ndarray, labels: np.ndarray, cell_ids: np.ndarray, fov: str) -> np.ndarray:
    """Probability that each cell is good; a missing or unreadable model is a one-line error."""
    if len(cell_ids) == 0:
        return np.zeros(0, np.float64)
    try:
        p = np.asarray(predict_good(np.asarray(dpc, np.float32), np.asarray(labels, np.uint32), cell_ids),
                       dtype=np.float64)
    except (OSError, RuntimeError) as exc:
        raise ScopeflowError(f"config key qc.classifier: classifier failed on FOV {fov}: {exc}") from exc
    if p.shape != (len(cell_ids),):
        raise ScopeflowError(
            f"config key qc.classifier: classifier returned {p.shape} values for {len(cell_ids)} cells (FOV {fov})"
        )
    return p
