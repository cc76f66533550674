"""Segment stage of a smear sample: the ``dpc`` channel of each FOV of the store into
``labels/cells`` (chunked, resumable; :mod:`scopeflow.segment.chunked`)."""

from __future__ import annotations

import copy
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
    is written last: it is the marker that these FOVs' labels are complete.

    A FOV of at most :data:`~scopeflow.smear.stage_common.OVERLAP_MAX_PIXELS` is a pipeline
    step: its DPC is read while the previous FOV is segmented, its maps (the network) are
    computed while the previous FOV's maps are decoded into labels and written (once, in a
    background thread, with its pyramid), so the network is not kept waiting. Larger FOVs
    run one at a time and stream their labels chunk by chunk, resumably. Labels do not
    depend on this overlap.
    """
    import dask

    from scopeflow.io import ome_zarr
    from scopeflow.segment import make_predictor

    kwargs = dict(predictor_kwargs or {})
    record = {"method": method, "chunk": chunk, "params": kwargs, "fovs": {}}
    names = list(fovs) if fovs is not None else ome_zarr.fov_names(zarr_path)
    t0 = time.perf_counter()
    predictors: dict[float, Any] = {}  # one per pixel size: a model loads once per job

    def read(fov):
        dpc = np.ascontiguousarray(ome_zarr.read_channel(zarr_path, fov, "dpc")[...], dtype=np.float32)
        return float(ome_zarr.fov_attrs(zarr_path, fov)["pixel_size_um"]), dpc

    small = lambda item: item[1].size <= OVERLAP_MAX_PIXELS  # noqa: E731
    with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))), \
            _Labels(zarr_path, chunk, record) as labels:
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
            labels.add(fov, dpc, predictor, target, key, overlap=small((ps, dpc)))
            del dpc
    record["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_json(record, out_record)
    return record


class _Labels:
    """The decoding and writing side of :func:`segment_store`: one FOV in flight.

    :meth:`add` computes a FOV's maps in the calling thread, then hands the decoding, the
    write of the labels and of their pyramid to a background thread; the FOV before it
    must be finished first (at most two FOVs' maps in memory). Errors are raised in FOV
    order; leaving the context waits for the last FOV (or, on an error, drops it).
    """

    def __init__(self, zarr_path, chunk, record: dict) -> None:
        self.zarr_path, self.chunk, self.record = zarr_path, chunk, record
        self.pending: tuple[str, Any] | None = None

    def __enter__(self) -> _Labels:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="scopeflow-labels")
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                self.collect()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, fov: str, dpc: np.ndarray, predictor, target, key: str, overlap: bool) -> None:
        from scopeflow.segment.chunked import labels_complete, predict_maps

        maps = None
        if overlap and not labels_complete(target, predictor, self.chunk, key):
            maps = predict_maps(dpc, predictor)  # the network, while the previous FOV decodes
            check = getattr(predictor, "verify", None)
            if check is not None:
                check()  # the back end's load-time check, before any labels are written
            # decode with the predictor as prepared for this FOV (the next FOV prepares it again)
            predictor = copy.copy(predictor)
        self.collect()
        job = (self._finish, fov, dpc, predictor, target, key, overlap, maps)
        if overlap:
            self.pending = (fov, self.pool.submit(*job))
        else:  # large FOVs: one at a time, streamed chunk by chunk
            self._done(fov, job[0](*job[1:]))

    def _finish(self, fov, dpc, predictor, target, key, in_memory, maps) -> int:
        from scopeflow.io import ome_zarr
        from scopeflow.segment.chunked import ZARR_ATTR, segment_to_zarr

        # FOVs that fit in memory: the labels are written once (no per-chunk round trip), decoded
        # by this one thread beside the network of the next FOV (more threads only slow the network)
        segment_to_zarr(dpc, predictor, target, chunk=self.chunk, resume_key=key, in_memory=in_memory,
                        maps=maps, num_workers=1 if in_memory else None)
        del maps
        ome_zarr.finish_labels(self.zarr_path, fov, "cells")
        return int(target.attrs[ZARR_ATTR]["n_labels"])  # recorded by segment_to_zarr

    def collect(self) -> None:
        """Wait for the FOV in flight and record its cells."""
        if self.pending is not None:
            fov, future = self.pending
            self.pending = None
            self._done(fov, future.result())

    def _done(self, fov: str, n: int) -> None:
        self.record["fovs"][fov] = n
        log.info("%s: %d cells", fov, n)
