"""Segment stage of a smear sample: the ``dpc`` channel of each FOV of the store into
``labels/cells`` (chunked, resumable; :mod:`scopeflow.segment.chunked`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scopeflow.segment.params import SEGMENT_DEFAULTS
from scopeflow.smear.stage_common import OVERLAP_MAX_PIXELS, atomic_json, prefetch

log = logging.getLogger("scopeflow")


def segment_store(
    zarr_path: str | Path,
    out_record: str | Path,
    *,
    fovs: Sequence[str] | None = None,
    method: str = SEGMENT_DEFAULTS["method"],
    chunk: int | None = SEGMENT_DEFAULTS["chunk"],
    predictor_kwargs: Mapping | None = None,
    threads: int = 1,
) -> dict:
    """Segment the ``dpc`` channel of FOVs of a sample store into ``labels/cells``.

    The JSON record ``out_record`` (method, parameters, model checksum, cells per FOV, time)
    is written last: it is the marker that these FOVs' labels are complete. The next FOV's
    DPC is read while one is segmented, and a FOV of at most
    :data:`~scopeflow.smear.stage_common.OVERLAP_MAX_PIXELS` keeps its labels in memory
    until they are final (written once); larger FOVs stream chunk by chunk, resumably.
    """
    import dask

    from scopeflow.io import ome_zarr
    from scopeflow.segment import make_predictor
    from scopeflow.segment.chunked import ZARR_ATTR, segment_to_zarr

    kwargs = dict(predictor_kwargs or {})
    record = {"method": method, "chunk": chunk, "params": kwargs, "fovs": {}}
    names = list(fovs) if fovs is not None else ome_zarr.fov_names(zarr_path)
    t0 = time.perf_counter()
    predictors: dict[float, Any] = {}  # one per pixel size: a model loads once per job

    def read(fov):
        dpc = np.ascontiguousarray(ome_zarr.read_channel(zarr_path, fov, "dpc")[...], dtype=np.float32)
        return float(ome_zarr.fov_attrs(zarr_path, fov)["pixel_size_um"]), dpc

    small = lambda item: item[1].size <= OVERLAP_MAX_PIXELS  # noqa: E731
    with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        # the next FOV's DPC is read while one is segmented (FOVs up to OVERLAP_MAX_PIXELS)
        for fov, (ps, dpc) in zip(names, prefetch(read, names, ahead=small)):
            if ps not in predictors:
                predictors[ps] = make_predictor(method, pixel_size_um=ps, **kwargs)
            predictor = predictors[ps]
            attrs = {"method": method, "chunk": chunk, "params": kwargs}
            sha = getattr(predictor, "sha256", None)
            if sha:
                attrs["model_sha256"] = record["model_sha256"] = sha
            # the key names everything the labels depend on: a rerun after a kill with the
            # same key resumes from the chunks already in the store
            key = json.dumps({k: v for k, v in attrs.items() if k != "params"} | {
                "params": {k: v for k, v in kwargs.items() if k not in ("threads", "device")},
                "pixel_size_um": ps}, sort_keys=True)
            target = ome_zarr.labels_array(zarr_path, fov, "cells", attrs=attrs)
            # FOVs that fit in memory: the labels are written once (no per-chunk round trip)
            segment_to_zarr(dpc, predictor, target, chunk=chunk, resume_key=key, in_memory=small((ps, dpc)))
            del dpc
            ome_zarr.finish_labels(zarr_path, fov, "cells")
            n = int(target.attrs[ZARR_ATTR]["n_labels"])  # recorded by segment_to_zarr
            record["fovs"][fov] = n
            log.info("%s: %d cells", fov, n)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_json(record, out_record)
    return record
