"""Units of tracking results when the pixel size or the frame rate is unknown.

As trackpy does without ``mpp``/``fps``, a movie without calibration is analysed in pixels
and frames: the analysis runs with 1 µm/px and 1 frame/s and the result columns are renamed
so that their names say the real units (``D_px2_frame`` in px²/frame, ``msd_px2``,
``lag_frame``; the ``y_um, x_um`` copies of the pixel positions are dropped). With a pixel
size but no frame rate the lengths stay in µm and times are in frames, and vice versa.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["unit_names", "rename_units"]

_PATTERNS = (  # (regex, replacement template); L = length unit, T = time unit
    (re.compile(r"um2_s$"), "{L}2_{T}"),
    (re.compile(r"um2_s_"), "{L}2_{T}_"),
    (re.compile(r"um2$"), "{L}2"),
    (re.compile(r"um2_"), "{L}2_"),
    (re.compile(r"^lag_s$"), "lag_{T}"),
    (re.compile(r"^t_s$"), "t_{T}"),
)


def unit_names(pixel_size_known: bool, fps_known: bool) -> tuple[str, str]:
    """(length unit, time unit) of the column names: ``um``/``px`` and ``s``/``frame``."""
    return ("um" if pixel_size_known else "px"), ("s" if fps_known else "frame")


def _rename(name: str, length: str, time: str) -> str:
    for rx, tpl in _PATTERNS:
        if rx.search(name):
            return rx.sub(tpl.format(L=length, T=time), name)
    return name


def rename_units(obj, pixel_size_known: bool, fps_known: bool):
    """Rename µm/s columns (DataFrame) or keys (dict) to the units actually known.

    Parameters
    ----------
    obj : pandas.DataFrame or dict
        A result computed with 1 µm/px for an unknown pixel size and 1 frame/s for an
        unknown frame rate.
    pixel_size_known, fps_known : bool
        Which calibration was given.

    Returns
    -------
    Same type, renamed (``y_um, x_um`` dropped when the pixel size is unknown).
    """
    if pixel_size_known and fps_known:
        return obj
    length, time = unit_names(pixel_size_known, fps_known)
    if isinstance(obj, pd.DataFrame):
        df = obj
        if not pixel_size_known:
            df = df.drop(columns=[c for c in ("y_um", "x_um") if c in df.columns])
        return df.rename(columns={c: _rename(c, length, time) for c in df.columns})
    out = {}
    for k, v in obj.items():
        if k == "pixel_size_um" and not pixel_size_known:
            continue
        if k == "fps" and not fps_known:
            continue
        out[_rename(k, length, time)] = v
    out["length_unit"] = length
    out["time_unit"] = time
    return out
