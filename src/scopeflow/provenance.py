"""Provenance records attached to every table and Zarr store scopeflow writes."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path

from scopeflow import __version__


def config_hash(config: Mapping) -> str:
    """sha256 (first 16 hex digits) of the config as canonical JSON."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_provenance(
    config: Mapping | None = None,
    inputs: Iterable[str | Path] = (),
    models: Mapping[str, str] | None = None,
    **extra,
) -> dict:
    """A JSON-serialisable provenance record.

    Parameters
    ----------
    config : mapping, optional
        The run's configuration; its hash is recorded (the whole config is not, to keep
        outputs identical across runs that differ only in unrelated keys).
    inputs : iterable of path
        Input files or folders (recorded as given, sorted).
    models : mapping, optional
        Model name -> sha256 of the weights used.
    **extra
        Any further JSON-serialisable fields (method, parameters ...).
    """
    record = {
        "scopeflow_version": __version__,
        "python": platform.python_version(),
        "inputs": sorted(str(p) for p in inputs),
        "models": dict(models or {}),
    }
    if config is not None:
        record["config_sha256"] = config_hash(config)
    record.update(extra)
    return record
