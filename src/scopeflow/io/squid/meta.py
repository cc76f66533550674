"""Metadata shared by every Squid save mode: parameters, channels, coordinates, bit depth.

Facts (Cephla-Lab/Squid, ``software/control``): the experiment folder holds
``acquisition parameters.json`` (``dx(mm)``, ``Nx``, ``dy(mm)``, ``Ny``, ``dz(um)``, ``Nz``,
``dt(s)``, ``Nt``, ``with AF``, ``with reflection AF``, ``with manual focus map``,
``objective{name, magnification, NA, tube_lens_f_mm}``, ``sensor_pixel_size_um``,
``tube_lens_mm``, ``confocal_mode``), ``acquisition_channels.yaml`` (the channels used, each
with ``camera_settings.pixel_format``) or, in older versions, ``configurations.xml``; one
folder per time point (``{t}/``) with ``coordinates.csv`` (``region, fov, z_level, x (mm),
y (mm), z (um), time[, z_piezo (um)]``) whatever the save mode. Channel names are display
names (``"BF LED matrix left half"``); in file names Squid replaces whitespace and the
characters ``/ \\ : * ? " < > |`` by ``_``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np


__all__ = [
    "CHANNELS_YAML",
    "bit_depth_from_pixel_format",
    "channel_suffix",
    "metadata_bit_depth",
    "objective_name",
    "timepoint_dirs",
    "true_max",
]

CHANNELS_YAML = "acquisition_channels.yaml"
_UNSAFE = re.compile(r'[\s/\\:*?"<>|]+')


def _channels_yaml(path: str | Path) -> dict:
    """Squid's ``acquisition_channels.yaml`` in acquisition folder ``path`` as a dict; ``{}``
    when it is absent or unreadable (optional metadata)."""
    ypath = Path(path) / CHANNELS_YAML
    if not ypath.is_file():
        return {}
    try:
        import yaml

        doc = yaml.safe_load(ypath.read_text()) or {}
    except Exception:  # noqa: BLE001 - optional metadata: unreadable = absent
        return {}
    return doc if isinstance(doc, dict) else {}


def channel_suffix(name: str) -> str:
    """File-name form of a Squid channel name (``"BF LED matrix left half"`` ->
    ``"BF_LED_matrix_left_half"``)."""
    return _UNSAFE.sub("_", str(name).strip())


def timepoint_dirs(path: Path) -> list[tuple[int, Path]]:
    """The time-point folders ``{t}/`` (digits only), sorted by t."""
    return sorted((int(p.name), p) for p in Path(path).iterdir() if p.is_dir() and p.name.isdigit())


def bit_depth_from_pixel_format(fmt: str | None) -> int | None:
    """Bits per pixel of a camera pixel format (``MONO12`` -> 12, ``BAYER_RG12`` -> 12)."""
    if not fmt:
        return None
    m = re.search(r"(\d+)\s*(?:p|packed)?\s*$", str(fmt).strip(), re.IGNORECASE)
    if not m:
        return None
    bits = int(m.group(1))
    return bits if 1 <= bits <= 16 else None


def metadata_bit_depth(path: Path, modes: Iterable[Mapping] = (),
                       channels: Iterable[str] | None = None) -> int | None:
    """Largest bit depth of the channels' camera pixel formats, from ``acquisition_channels.yaml``
    (``channels[].camera_settings.pixel_format``) or ``configurations.xml`` (``PixelFormat``);
    None when neither says.

    ``channels`` (file-name forms, e.g. the DPC halves) restricts it to those channels, so that
    a fluorescence channel saved at another depth does not change the brightfield's saturation
    level; when none of them is listed every channel counts.
    """
    found: list[tuple[str, int]] = []
    doc = _channels_yaml(path)
    if doc:
        for ch in doc.get("channels", []) if isinstance(doc, dict) else []:
            cam = ch.get("camera_settings") if isinstance(ch, dict) else None
            b = bit_depth_from_pixel_format(cam.get("pixel_format")) if isinstance(cam, dict) else None
            if b:
                found.append((channel_suffix(ch.get("name", "")), b))
    for m in modes:
        b = bit_depth_from_pixel_format(m.get("PixelFormat"))
        if b:
            found.append((channel_suffix(m.get("Name", "")), b))
    wanted = set(channels or ())
    bits = [b for name, b in found if name in wanted] or [b for _, b in found]
    return max(bits) if bits else None


def objective_name(path: Path, params: Mapping | None = None) -> str:
    """Name of the objective the acquisition was taken with (e.g. ``"20x"``), "" when unknown.

    From ``acquisition parameters.json`` (``objective.name``, or the magnification as
    ``"<m>x"``), else the top-level ``objective`` of ``acquisition_channels.yaml`` (Squid).
    """
    obj = (params or {}).get("objective")
    if isinstance(obj, str) and obj.strip():
        return obj.strip()
    if isinstance(obj, Mapping):
        name = str(obj.get("name") or "").strip()
        if name:
            return name
        mag = obj.get("magnification")
        if isinstance(mag, (int, float)) and mag > 0:
            return f"{mag:g}x"
    doc = _channels_yaml(path)
    if doc:
        name = doc.get("objective") if isinstance(doc, dict) else None
        if isinstance(name, str) and name.strip():
            return name.strip()
    return ""


def true_max(dtype, bit_depth: int | None, sample_max: int, or_bits: int) -> int:
    """The value a saturated pixel has: the camera's largest value in its container.

    Parameters
    ----------
    dtype : numpy dtype
        Container dtype (uint8 / uint16).
    bit_depth : int or None
        Camera bit depth from the metadata; None = infer it from the data.
    sample_max : int
        Largest value seen in the acquisition's planes.
    or_bits : int
        Bitwise OR of the values seen: its trailing zero bits tell data shifted to the top of
        the container (Squid shifts MONO12 frames up by 4 bits for some cameras) from data in
        the low bits.

    Returns
    -------
    int
        ``2**b - 1`` for b-bit data in the low bits (12-bit: 4095), ``(2**b - 1) << (n - b)`` for
        data shifted to the top of an n-bit container (12-bit in 16: 65520), the dtype's maximum
        for full-depth data.

    Notes
    -----
    Without metadata, uint16 data whose maximum is below 2**10, 2**12 or 2**14 are taken as
    10-, 12- or 14-bit data in the low bits, and data whose values are all multiples of
    2**s (s = 2..6) as (16 - s)-bit data shifted up.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return 1
    n = dtype.itemsize * 8
    full = int(np.iinfo(dtype).max)
    or_bits = int(or_bits)
    shift = (or_bits & -or_bits).bit_length() - 1 if or_bits else 0  # trailing zero bits
    if bit_depth is None:
        if n <= 8:
            return full
        low = next((b for b in (10, 12, 14) if sample_max < 2 ** b), None)
        if low is not None:
            return 2 ** low - 1
        if 2 <= shift <= 6:
            return (2 ** (n - shift) - 1) << shift
        return full
    b = min(int(bit_depth), n)
    if b == n:
        return full
    if sample_max >= 2 ** b and shift >= n - b:
        return (2 ** b - 1) << (n - b)
    return 2 ** b - 1
