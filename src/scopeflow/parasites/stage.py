"""Parasitemia stage on paths: fluorescence ingest helpers and the per-sample parasite tables.

Ingest (called from :func:`scopeflow.smear.ingest` and :func:`~scopeflow.smear.write_images`):
the fluorescence frame of each FOV is listed in the FOV table's ``fluorescence`` column and
written into the FOV's OME-Zarr image as channels ``fluorescence_r``, ``fluorescence_g``,
``fluorescence_b`` (float32 in [0, 1]; a mono frame gives three equal planes).

The frames are divided by the camera's true full scale (the ``fluorescence_max`` column: 255 for
8-bit, 4095 for a 12-bit camera in 16-bit files, from the acquisition metadata or the data, see
:func:`scan_fluorescence`), so a 12-bit acquisition looks like an 8-bit one.

Stage (:func:`parasites_sample`): the sample's fluorescence flatfield
(:func:`fluorescence_flatfield`, ``parasites.flatfield``) divides every frame; then per FOV, spots
(:func:`scopeflow.parasites.detect.detect_spots`)
→ 31×31 crops of fluorescence + DPC → the shipped classifier and its out-of-distribution flag
(:func:`scopeflow.parasites.ood.score_spots`) → ``spots.parquet``; then
:func:`scopeflow.parasites.parasitemia.parasitemia_tables` over the QC-passing cells of the
sample's cell table (parasite calls flagged ``ood`` are not counted). A sample without
fluorescence frames gets empty spot/FOV tables and a
one-row sample table with ``status`` = ``"skipped: ..."`` saying why (its counts and flags
null, except ``n_rbc_counted``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError
from scopeflow.io.atomic import atomic_path
from scopeflow.io.fluorescence import DEFAULT_CHANNEL, read_fluorescence

log = logging.getLogger(__name__)

__all__ = [
    "FLUORESCENCE_CHANNELS",
    "SPOT_COLUMNS",
    "STAGE_DEFAULTS",
    "fluorescence_channels",
    "fluorescence_files",
    "fluorescence_flatfield",
    "parasites_sample",
    "scan_fluorescence",
]

#: OME-Zarr channel names of the fluorescence planes.
FLUORESCENCE_CHANNELS = ("fluorescence_r", "fluorescence_g", "fluorescence_b")

#: Columns of ``spots.parquet``.
SPOT_COLUMNS = ["sample", "fov", "spot_id", "y", "x", "intensity", "response", "r", "g", "b",
                "peak_raw", "saturated", "cell_id", "cell_qc_pass", "p_parasite", "is_parasite",
                "ood", "ood_score"]

#: pandas dtypes of the ``spots.parquet`` columns.
SPOT_DTYPES = dict(zip(SPOT_COLUMNS, ["str", "str", "int64", "int64", "int64", *["float64"] * 6, "bool",
                                      "int64", "bool", "float64", "bool", "bool", "float64"], strict=True))

#: per-sample parasitemia columns that are flags (nullable booleans)
_FLAG_COLUMNS = ("hyperparasitaemia", "parasites_detected")

#: Defaults of the ``parasites`` config keys used by the stage.
STAGE_DEFAULTS = {
    "channel": DEFAULT_CHANNEL,
    "flatfield": True,
    "spot_threshold": 0.02,
    "background_um": 5.7,
    "weights": None,
    "max_spots_per_fov": 20000,
    "downsample": 1,
}


def scan_fluorescence(fovs: Sequence, channel: str = DEFAULT_CHANNEL,
                      shape: tuple[int, int] | None = None,
                      bit_depth: int | None = None) -> tuple[list[str], int | None]:
    """The fluorescence file of each FOV and the frames' true full scale.

    Every frame is read once, so a wrong one stops ingest with one line naming it.

    Parameters
    ----------
    fovs : sequence of scopeflow.io.octopi.FOV
        The acquisition's FOVs.
    channel : str
        Channel file-name suffix.
    shape : (int, int), optional
        The brightfield frame shape every fluorescence frame must have.
    bit_depth : int, optional
        Camera bit depth from the acquisition metadata
        (:func:`scopeflow.io.fluorescence.fluorescence_max_value`).

    Returns
    -------
    (files, max_value)
        ``files``: one path per FOV ("" for all when the acquisition has none);
        ``max_value``: the value of a saturated pixel (255; 4095 for 12-bit frames in
        16-bit files ...), None without frames.

    Raises
    ------
    scopeflow.errors.InputImageError
        Some FOVs have the channel and others do not (names the first missing file), or a
        frame is unreadable / not mono or RGB / of another size / of another dtype.
    """
    from scopeflow.io.fluorescence import (
        check_fluorescence,
        fluorescence_max_value,
        read_fluorescence_raw,
    )

    have = [f.files.get(channel) for f in fovs]
    if not any(have):
        return [""] * len(fovs), None
    for f, p in zip(fovs, have, strict=True):
        if p is None:
            n = sum(p is not None for p in have)
            raise InputImageError(
                f"{f.expected_file(channel)}: missing {channel} image ({n} of {len(fovs)} FOVs "
                "have one); copy it, or remove this FOV so that every FOV has the channel")
    dtypes: dict = {}

    def frames():
        for p in have:
            a = check_fluorescence(read_fluorescence_raw(p), p, shape)
            first = dtypes.setdefault("dtype", (a.dtype, p))
            if a.dtype != first[0]:
                raise InputImageError(f"{p}: fluorescence frame is {a.dtype} but {first[1]} is "
                                      f"{first[0]}; every frame of an acquisition must come from "
                                      "the same camera setting")
            yield a

    top = fluorescence_max_value(frames(), bit_depth)
    return [str(p) for p in have], top


def fluorescence_files(fovs: Sequence, channel: str = DEFAULT_CHANNEL,
                       shape: tuple[int, int] | None = None) -> list[str]:
    """The fluorescence file of each FOV ("" for all when the acquisition has none); see
    :func:`scan_fluorescence` (which also returns the frames' full scale)."""
    return scan_fluorescence(fovs, channel, shape)[0]


def fluorescence_channels(path: str | Path, shape: tuple[int, int],
                          max_value: float | None = None) -> dict[str, np.ndarray]:
    """The fluorescence planes of one frame as OME-Zarr channels (float32 (y, x) each), divided
    by the camera's full scale ``max_value`` (None/NaN: the container's)."""
    f = read_fluorescence(path, shape, max_value)
    return {name: f[..., n] for n, name in enumerate(FLUORESCENCE_CHANNELS)}


def fluorescence_flatfield(frames: Iterable[np.ndarray], opening_px: int = 1) -> np.ndarray:
    """Flatfield (y, x, 3), mean 1 per plane, of a sample's fluorescence frames.

    Per colour plane: the frame's background (grey opening with a square of ``opening_px``,
    the spot detector's top-hat element, so parasites, nuclei and debris do not brighten the
    flatfield), then :func:`scopeflow.smear.flatfield.estimate_flatfield`'s recipe (block mean to
    ≈ 128 px, median over the FOVs, Gaussian smoothing of 1/16 of the larger side, bilinear
    back to full size, mean 1): the excitation and collection fall-off that Octopi removes
    from the fluorescence before spot detection. A plane without signal (all 0) gets a
    flatfield of 1.

    Parameters
    ----------
    frames : iterable of numpy.ndarray
        float (y, x, 3) frames of one sample (all the same shape); a generator is fine (only
        binned copies are kept).
    opening_px : int
        Edge (px) of the opening's square; 1 = no opening.

    Returns
    -------
    numpy.ndarray
        float32 (y, x, 3).
    """
    from scipy import ndimage as ndi

    from scopeflow.smear import flatfield

    binned: list[list[np.ndarray]] = [[], [], []]
    shape, factor = None, None
    size = max(int(opening_px), 1)
    for f in frames:
        a = np.asarray(f, np.float32)
        if shape is None:
            shape = a.shape[:2]
            factor = flatfield.flatfield_bin_factor(shape)
        for c in range(3):
            plane = ndi.grey_opening(a[..., c], size=(size, size)) if size > 1 else a[..., c]
            binned[c].append(flatfield.bin_image(plane, factor))
    if shape is None:
        raise ValueError("fluorescence_flatfield: no frames")
    out = np.ones((*shape, 3), np.float32)
    for c in range(3):
        try:
            out[..., c] = flatfield.expand_flatfield(
                flatfield.coarse_flatfield(binned[c], shape, factor), shape, factor)
        except ValueError:  # no signal in this plane: leave it uncorrected
            log.warning("fluorescence plane %s has no signal: no flatfield", "RGB"[c])
    return out


def _skipped_tables(sample: str, reason: str, n_rbc: int):
    """The spot, per-FOV and per-sample tables (Arrow, without pandas) of a sample whose
    parasitemia is not computed: no spots, no FOV rows, and one sample row whose counts and
    flags are missing, except ``n_rbc_counted``."""
    from scopeflow.io.tables import typed_table
    from scopeflow.parasites.parasitemia import _ROW_COLUMNS

    row = {"sample": ("str", [sample]), "status": ("str", [f"skipped: {reason}"])}
    for c in _ROW_COLUMNS:
        dtype = "Int64" if c.startswith("n_") else "boolean" if c in _FLAG_COLUMNS else "float64"
        row[c] = (dtype, [None])
    row["n_rbc_counted"] = ("Int64", [int(n_rbc)])
    spots = typed_table({c: (t, []) for c, t in SPOT_DTYPES.items()})
    per_fov = typed_table({c: ("object", []) for c in ["sample", "fov", *_ROW_COLUMNS]})
    return spots, per_fov, typed_table(row)


def parasites_sample(
    zarr_path: str | Path,
    cells_path: str | Path,
    fovs_tsv: str | Path,
    out_spots: str | Path,
    out_fovs: str | Path,
    out_sample: str | Path,
    *,
    sample: str,
    params: Mapping | None = None,
    out_gallery: str | Path | None = None,
    provenance: Mapping | None = None,
) -> dict:
    """Spots, parasite calls and parasitemia tables of one sample.

    Parameters
    ----------
    zarr_path : path
        The sample's OME-Zarr (channels ``dpc`` and ``fluorescence_*``, ``labels/cells``).
    cells_path : path
        The merged cell table (``fov``, ``cell_id``, ``qc_pass``).
    fovs_tsv : path
        The ingest FOV table (``fov``, ``pixel_size_um``, ``fluorescence``).
    out_spots, out_fovs, out_sample : path
        ``spots.parquet`` and the per-FOV / per-sample parasitemia tables (Parquet, each with
        a CSV mirror beside it). Written last, each atomically.
    sample : str
        Sample name.
    params : mapping, optional
        ``parasites`` config keys (:data:`STAGE_DEFAULTS` and
        :data:`scopeflow.parasites.parasitemia.PARASITEMIA_DEFAULTS`).
    out_gallery : path, optional
        ``.npz`` with the crops and scores of the 24 highest-scoring spots and the 24 spots
        nearest the threshold (for the report).
    provenance : mapping, optional
        Stored in the tables' Parquet metadata (with the model's sha256 added).

    Returns
    -------
    dict
        The per-sample table's row (``None`` where a value is missing).
    """
    from scopeflow.io.tables import write_arrow
    from scopeflow.smear.fov_table import read_fov_table

    p = {**STAGE_DEFAULTS, **dict(params or {})}
    rows = read_fov_table(fovs_tsv)
    if all(isinstance(r.get("fluorescence"), str) and r["fluorescence"] for r in rows):
        tables, gallery, sha = _call_parasites(zarr_path, cells_path, rows, sample, p)
    else:  # no pandas, torch, scipy or zarr: a job that only says "skipped" starts fast
        from scopeflow.io.columns import read_columns

        reason = f"no {p['channel']} images in this acquisition"
        log.info("%s: parasitemia skipped (%s)", sample, reason)
        n_rbc = int(np.count_nonzero(read_columns(cells_path, ["qc_pass"])["qc_pass"]))
        tables = _skipped_tables(sample, reason, n_rbc)
        gallery = {"crops": np.zeros((0, 4, 31, 31), np.uint8), "p": np.zeros(0),
                   "kind": np.zeros(0, "U8"), "threshold": np.float64(np.nan)}
        sha = None
    if out_gallery is not None:
        with atomic_path(out_gallery) as tmp:
            np.savez_compressed(tmp, **gallery)
    prov = {**dict(provenance or {}), "parasite_model_sha256": sha}
    for table, path in zip(tables, (out_spots, out_fovs, out_sample), strict=True):
        write_arrow(table, path, prov)
    return tables[2].to_pylist()[0]


def _call_parasites(zarr_path, cells_path, rows: list[dict], sample: str, p: Mapping):
    """Spots, parasite calls and parasitemia of a sample with fluorescence frames: its spot,
    per-FOV and per-sample tables (Arrow), the report gallery and the model's sha256."""
    import pandas as pd
    import pyarrow as pa

    from scopeflow.io import ome_zarr
    from scopeflow.io.tables import read_table
    from scopeflow.parasites.classifier import DEFAULT_WEIGHTS, load_parasite_model
    from scopeflow.parasites.detect import crop_spots, detect_spots
    from scopeflow.parasites.ood import load_ood_reference, score_spots
    from scopeflow.parasites.parasitemia import parasitemia_tables
    from scopeflow.provenance import file_sha256

    cells = read_table(cells_path, columns=["fov", "cell_id", "qc_pass"])
    model, _ = load_parasite_model(p["weights"])
    reference = load_ood_reference(p["weights"])
    qc = cells.set_index(["fov", "cell_id"])["qc_pass"]
    tables, keep_crops, keep_p = [], [], []

    def frame(fov):
        return np.stack([np.asarray(ome_zarr.read_channel(zarr_path, fov, c))
                         for c in FLUORESCENCE_CHANNELS], axis=-1)

    ff = None
    if p["flatfield"]:
        size = round(float(p["background_um"]) / float(rows[0]["pixel_size_um"])) | 1
        ff = fluorescence_flatfield((frame(r["fov"]) for r in rows), size)
    for row in rows:
        fov = row["fov"]
        ps = float(row["pixel_size_um"])
        fl = frame(fov)
        if ff is not None:
            fl = fl / ff
        dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc"))
        labels = ome_zarr.read_labels(zarr_path, fov)
        sp = detect_spots(fl, ps, labels=labels, threshold=float(p["spot_threshold"]),
                          background_um=float(p["background_um"]),
                          downsample=int(p["downsample"]))
        if len(sp) > int(p["max_spots_per_fov"]):
            raise InputImageError(
                f"{row['fluorescence']}: {len(sp)} spot candidates (> parasites."
                f"max_spots_per_fov {p['max_spots_per_fov']}); is this the right channel, "
                "or raise parasites.spot_threshold")
        crops = crop_spots(fl, dpc, sp["y"].to_numpy(), sp["x"].to_numpy())
        sc = score_spots(crops, model=model, reference=reference)
        sp.insert(0, "spot_id", np.arange(len(sp), dtype=np.int64))
        sp.insert(0, "fov", fov)
        sp.insert(0, "sample", sample)
        sp["p_parasite"] = sc["p_parasite"]
        sp["is_parasite"] = sc["is_parasite"]
        sp["ood"] = sc["ood"]
        sp["ood_score"] = sc["ood_score"]
        key = pd.MultiIndex.from_arrays([sp["fov"], sp["cell_id"]])
        sp["cell_qc_pass"] = qc.reindex(key).fillna(False).astype(bool).to_numpy()
        tables.append(sp[SPOT_COLUMNS])
        keep_crops.append(crops)
        keep_p.append(sc["p_parasite"])
        log.info("%s: %d candidates, %d parasite calls (%d of them out of distribution)",
                 fov, len(sp), int(sc["is_parasite"].sum()),
                 int((sc["is_parasite"] & sc["ood"]).sum()))
    spots = (pd.concat(tables, ignore_index=True) if tables else
             pd.DataFrame({c: pd.Series(dtype=t) for c, t in SPOT_DTYPES.items()}))
    per_fov, per_sample = parasitemia_tables(spots, cells, sample, p)
    thr = float(model.threshold)
    allc = np.concatenate(keep_crops) if keep_crops else np.zeros((0, 4, 31, 31), np.uint8)
    allp = np.concatenate(keep_p) if keep_p else np.zeros(0)
    top = np.argsort(-allp, kind="stable")[:24]
    near = np.argsort(np.abs(allp - thr), kind="stable")
    near = near[~np.isin(near, top)][:24]
    gallery = {"crops": np.concatenate([allc[top], allc[near]]),
               "p": np.concatenate([allp[top], allp[near]]),
               "kind": np.array(["top"] * len(top) + ["near"] * len(near), "U8"),
               "threshold": np.float64(thr)}
    arrow = tuple(pa.Table.from_pandas(df, preserve_index=False) for df in (spots, per_fov, per_sample))
    return arrow, gallery, file_sha256(Path(p["weights"] or DEFAULT_WEIGHTS))
