"""The FOV list of a smear sample (``fovs.tsv``): one row per field of view, written by the
ingest stage and read by every later stage, without pandas (a job's start-up time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: Channel names of the two half-LED images of a raw FOV.
LEFT = "BF_LED_matrix_left_half"
RIGHT = "BF_LED_matrix_right_half"

#: FOV list columns copied into each FOV's store attributes and from there into the FOV table.
RAW_ATTRS = ("t", "region", "i", "j", "k", "n_z", "z_selection", "z_focus_scores", "x_mm", "y_mm",
             "z_um", "bit_depth", "objective")


def _tsv_text(value) -> str:
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return ""
    return str(value)


def write_fov_table(rows: Sequence[Mapping], path: str | Path) -> None:
    """Write FOV rows as a TSV (NaN as empty), as ``pandas.DataFrame.to_csv`` wrote it."""
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row)) or [
        "fov", "pixel_size_um", "na", "wavelength_um"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_tsv_text(row.get(c, float("nan"))) for c in columns])


#: Columns of the FOV list that hold text (file names); the others are numbers.
_TEXT_COLUMNS = {"fov", "left", "right", "image", "fluorescence", "region", "z_selection",
                 "z_focus_scores", "objective"}


def _tsv_value(column: str, text: str):
    if column in _TEXT_COLUMNS:
        return text
    if text == "" or text.lower() == "nan":
        return float("nan")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:  # a column of text (file names) a later stage added
        return text


def read_fov_table(fovs_tsv: str | Path) -> list[dict]:
    """The rows of an ingest's ``fovs.tsv`` as dicts (numbers as int or float, NaN when
    empty; ``fov`` and file columns as text), without pandas."""
    import csv

    with open(fovs_tsv, newline="") as fh:
        return [{k: _tsv_value(k, v) for k, v in row.items()} for row in csv.DictReader(fh, delimiter="\t")]


def shard_fovs(fovs_tsv: str | Path, shard: int, fovs_per_job: int,
               timepoint: int | None = None) -> list[str]:
    """FOV names of shard ``shard`` (0-based): consecutive blocks of ``fovs_per_job`` FOVs (of
    time point ``timepoint`` only, when given)."""
    names = [r["fov"] for r in read_fov_table(fovs_tsv) if timepoint is None or r["t"] == timepoint]
    return names[shard * fovs_per_job:(shard + 1) * fovs_per_job]
