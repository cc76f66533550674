"""Simulated multi-region, multi-z, multi-time-point acquisitions in every Squid save mode.

:func:`simulate_squid_frames` makes the pixels (a smear FOV per region and FOV index, imaged at
``nz`` focus positions around a random in-focus plane, ``nt`` times with fresh camera noise);
:func:`write_layout` writes them as the legacy Octopi layout or one of Squid's four save modes
(facts from Cephla-Lab/Squid, see :mod:`scopeflow.io.squid`), so that the same acquisition can
be read back from every layout. :func:`simulate_squid_acquisition` does both.

Stage coordinates: region ``r`` starts at x = 10 + 20·r mm, y = 10 mm; FOV ``n`` of a region
lies ``n`` FOV widths to the right; z of plane ``k`` is ``3000 + k·dz_um`` µm. Camera frames are
``bits``-bit in uint16 (``msb=False``: values in the low bits, 12-bit = 0..4095; ``msb=True``:
shifted to the top as Squid does for some MONO12 cameras).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from scopeflow.io.octopi_meta import CONFIG_FILE, COORDS_FILE, LEFT, PARAMS_FILE, TUBE_LENS_MM
from scopeflow.io.octopi_write import _choose_objective, _configurations_xml
from scopeflow.simulate.smear import DEFAULTS, _vignetting, camera, image_halves, rbc_phantom

__all__ = ["LAYOUTS", "simulate_squid_acquisition", "simulate_squid_frames", "write_layout"]

#: Layout names: legacy Octopi grid names, then Squid's save modes.
LAYOUTS = ("octopi", "individual", "multipage", "ome_tiff", "zarr")
RIGHT = "BF_LED_matrix_right_half"
#: The 405 nm-excited fluorescence channel (file-name form), written with ``parasites_per_ul``.
FLUORESCENCE = "Fluorescence_405_nm_Ex"
_DISPLAY = {LEFT: "BF LED matrix left half", RIGHT: "BF LED matrix right half",
            FLUORESCENCE: "Fluorescence 405 nm Ex"}
#: RGB -> grey weights (ITU-R 601) of the mono fluorescence camera frame.
_GREY = np.asarray((0.299, 0.587, 0.114))


def simulate_squid_frames(
    *,
    regions=("A1", "B2"),
    n_fovs: int = 4,
    nz: int = 3,
    nt: int = 2,
    shape: tuple[int, int] = (128, 128),
    seed: int = 0,
    pixel_size_um: float = DEFAULTS["pixel_size_um"],
    dz_um: float = 4.0,
    bits: int = 12,
    msb: bool = False,
    na: float = DEFAULTS["na"],
    wavelength_um: float = DEFAULTS["wavelength_um"],
    density: float = DEFAULTS["density"],
    parasites_per_ul: float | None = None,
) -> dict:
    """Pixels and truth of a simulated acquisition (regions x FOVs x z planes x time points).

    Parameters
    ----------
    regions : sequence of str
        Region names (wells like ``A1`` give Squid's plate layout in Zarr mode).
    n_fovs, nz, nt : int
        FOVs per region, z planes per FOV, time points.
    shape : (int, int)
        FOV shape (px).
    seed : int
        Seed: the same arguments give identical frames.
    pixel_size_um, na, wavelength_um, density : float
        Sample and optics, as :func:`scopeflow.simulate.simulate_fov`.
    dz_um : float
        Step between z planes (µm); plane ``k`` is defocused by ``(k - k_focus)·dz_um``.
    bits : int
        Camera bit depth (8 gives uint8 frames).
    msb : bool
        Shift uint16 frames to the top bits of the container.
    parasites_per_ul : float, optional
        When given, every plane also gets a fluorescence frame (channel
        ``Fluorescence_405_nm_Ex``) of the FOV's cells with malaria parasites at this density
        (:func:`scopeflow.simulate.parasites.simulate_fluorescence`, fresh noise per time
        point), as a mono camera saves it: the colour model's grey value at the container's
        full depth (uint16: 0..65535, pixel format ``MONO16``; uint8 for ``bits=8``).

    Returns
    -------
    dict
        ``frames`` {(t, region, fov, z): {channel: (y, x) array}}, ``focus`` {(region, fov):
        in-focus z}, ``xy_mm`` {(region, fov): (x, y)}, ``z_um`` {z: stage z},
        ``n_cells`` {(region, fov): cells}, ``rings`` {(t, region, fov): parasites placed}
        (with ``parasites_per_ul``), and the arguments.
    """
    frames, focus, xy, n_cells, rings = {}, {}, {}, {}, {}
    fov_w_mm = shape[1] * pixel_size_um / 1000.0
    for r, region in enumerate(regions):
        for n in range(n_fovs):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), r, n]))
            _, opd, labels, cells = rbc_phantom(shape, pixel_size_um, rng, density=density)
            phase = (np.float32(2 * np.pi / wavelength_um) * opd).astype(np.float32)
            k_focus = int(rng.integers(nz)) if nz > 1 else 0
            ffs = {LEFT: _vignetting(shape, rng, 0.25, -0.04), RIGHT: _vignetting(shape, rng, 0.25, 0.04)}
            focus[(region, n)] = k_focus
            xy[(region, n)] = (round(10.0 + 20.0 * r + n * fov_w_mm, 6), 10.0)
            n_cells[(region, n)] = len(cells)
            fluor = {}
            if parasites_per_ul is not None:
                for t in range(nt):
                    fluor[t] = _fluorescence_frame(labels, pixel_size_um, na, parasites_per_ul, bits,
                                                   np.random.SeedSequence([int(seed), r, n, t, 405]))
                    rings[(t, region, n)] = fluor[t][1]
            for z in range(nz):
                halves = image_halves(phase, pixel_size_um, wavelength_um, na,
                                      defocus_um=(z - k_focus) * dz_um)
                for t in range(nt):
                    noise = np.random.default_rng(np.random.SeedSequence([int(seed), r, n, z, t, 7]))
                    out = {}
                    for ch, intensity in zip((LEFT, RIGHT), halves):
                        img = camera(intensity, noise, flatfield=ffs[ch], bits=bits)
                        if msb and img.dtype == np.uint16:
                            img = (img << (16 - bits)).astype(np.uint16)
                        out[ch] = img
                    if fluor:
                        out[FLUORESCENCE] = fluor[t][0]
                    frames[(t, region, n, z)] = out
    return {"frames": frames, "focus": focus, "xy_mm": xy, "n_cells": n_cells, "rings": rings,
            "z_um": {z: 3000.0 + z * dz_um for z in range(nz)},
            "regions": list(regions), "n_fovs": n_fovs, "nz": nz, "nt": nt, "shape": list(shape),
            "seed": int(seed), "pixel_size_um": float(pixel_size_um), "dz_um": float(dz_um),
            "bits": int(bits), "msb": bool(msb), "na": float(na),
            "parasites_per_ul": None if parasites_per_ul is None else float(parasites_per_ul)}


def _fluorescence_frame(labels, pixel_size_um, na, parasites_per_ul, bits, seq) -> tuple[np.ndarray, int]:
    """Mono fluorescence frame of one FOV (full depth of the BF frames' container) and the
    number of parasites (rings) placed."""
    from scopeflow.simulate.parasites import simulate_fluorescence

    seed = int(seq.generate_state(1)[0])
    sim = simulate_fluorescence(labels, pixel_size_um, seed, parasites_per_ul=parasites_per_ul, na=na)
    grey = sim["fluorescence"].astype(np.float64) @ _GREY / 255.0
    dtype = np.uint8 if bits <= 8 else np.uint16
    frame = np.clip(np.rint(grey * np.iinfo(dtype).max), 0, np.iinfo(dtype).max).astype(dtype)
    return frame, int((sim["truth"]["kind"] == "ring").sum())


def _channels(sim: dict) -> list[str]:
    """The channels of the simulated frames, in acquisition order (BF left, right, fluorescence)."""
    first = next(iter(sim["frames"].values()))
    return [c for c in (LEFT, RIGHT, FLUORESCENCE) if c in first]


def _params(sim: dict) -> dict:
    ps = sim["pixel_size_um"]
    obj = _choose_objective(ps, None)
    obj["NA"] = sim["na"]
    sensor = ps * float(obj["magnification"]) * TUBE_LENS_MM / float(obj["tube_lens_f_mm"])
    return {
        "dx(mm)": sim["shape"][1] * ps / 1000.0, "Nx": 1,
        "dy(mm)": sim["shape"][0] * ps / 1000.0, "Ny": 1,
        "dz(um)": sim["dz_um"], "Nz": sim["nz"], "dt(s)": 60.0, "Nt": sim["nt"],
        "with AF": False, "with reflection AF": False, "with manual focus map": False,
        "objective": obj, "sensor_pixel_size_um": sensor, "tube_lens_mm": TUBE_LENS_MM,
        "confocal_mode": False,
    }


def _pixel_format(sim: dict, channel: str = LEFT) -> str:
    """Camera pixel format of a channel: the BF frames' bit depth; the fluorescence frame uses
    its container's full depth."""
    if channel == FLUORESCENCE:
        return "MONO8" if sim["bits"] <= 8 else "MONO16"
    return f"MONO{sim['bits']}"


def _write_common(out: Path, sim: dict, squid: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).write_text(json.dumps(_params(sim)))
    if squid:  # Squid writes acquisition_channels.yaml (channel settings incl. pixel format)
        import yaml

        doc = {"version": 1, "objective": _params(sim)["objective"]["name"], "confocal_mode": False,
               "channels": [{"name": _DISPLAY[c], "camera_settings": {
                   "exposure_time_ms": 12.0, "gain_mode": 0.0, "pixel_format": _pixel_format(sim, c)}}
                   for c in _channels(sim)]}
        (out / "acquisition_channels.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        with open(out / COORDS_FILE, "w", newline="") as fh:  # experiment-level: FOV centres
            w = csv.writer(fh)
            w.writerow(["region", "x (mm)", "y (mm)", "z (mm)"])
            for (region, n), (x, y) in sorted(sim["xy_mm"].items()):
                w.writerow([region, x, y, sim["z_um"][0] / 1000.0])
    else:
        xml = _configurations_xml(_channels(sim), _pixel_format(sim))
        fl = f'Name="{_DISPLAY[FLUORESCENCE]}"'
        if fl in xml:  # its own pixel format
            head, tail = xml.split(fl, 1)
            tail = tail.replace(f'PixelFormat="{_pixel_format(sim)}"',
                                f'PixelFormat="{_pixel_format(sim, FLUORESCENCE)}"', 1)
            xml = head + fl + tail
        (out / CONFIG_FILE).write_text(xml)
    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    meta = {k: v for k, v in sim.items() if k not in ("frames", "focus", "xy_mm", "n_cells", "rings")}
    if sim.get("rings"):
        meta["rings"] = {f"{t}-{r}_{n}": k for (t, r, n), k in sorted(sim["rings"].items())}
    meta["focus"] = {f"{r}_{n}": k for (r, n), k in sorted(sim["focus"].items())}
    meta["n_cells"] = {f"{r}_{n}": k for (r, n), k in sorted(sim["n_cells"].items())}
    (truth / "simulation.json").write_text(json.dumps(meta, indent=2) + "\n")


def _timepoint_folders(out: Path, sim: dict, squid: bool) -> None:
    """``{t}/coordinates.csv`` and the done file of every time point (all save modes)."""
    for t in range(sim["nt"]):
        tdir = out / str(t)
        tdir.mkdir(parents=True, exist_ok=True)
        with open(tdir / COORDS_FILE, "w", newline="") as fh:
            w = csv.writer(fh)
            if squid:
                w.writerow(["region", "fov", "z_level", "x (mm)", "y (mm)", "z (um)", "time"])
            else:
                w.writerow(["region", "i", "j", "k", "x (mm)", "y (mm)", "z (um)"])
            for (region, n), (x, y) in sorted(sim["xy_mm"].items()):
                for z in range(sim["nz"]):
                    if squid:
                        w.writerow([region, n, z, x, y, sim["z_um"][z], f"2026-01-01_00-{t:02d}-00.000000"])
                    else:
                        w.writerow([region, n, 0, z, x, y, sim["z_um"][z]])
        (tdir / (".done" if squid else "done")).write_text("")


def _write_individual(out: Path, sim: dict, legacy: bool) -> None:
    import tifffile

    for (t, region, n, z), chans in sim["frames"].items():
        for ch, img in chans.items():
            stem = f"{region}_{n}_0_{z}" if legacy else f"{region}_{n}_{z}"
            tifffile.imwrite(out / str(t) / f"{stem}_{ch}.tiff", img)


def _write_multipage(out: Path, sim: dict) -> None:
    import tifffile

    for (t, region, n, z), chans in sorted(sim["frames"].items()):
        x, y = sim["xy_mm"][(region, n)]
        path = out / str(t) / f"{region}_{n}_stack.tiff"
        for c, ch in enumerate(_channels(sim)):
            meta = {"z_level": z, "channel": _DISPLAY[ch], "channel_index": c, "region_id": region,
                    "fov": n, "x_mm": x, "y_mm": y, "z_mm": sim["z_um"][z] / 1000.0,
                    "time": f"2026-01-01 00:{t:02d}:00.000000"}
            with tifffile.TiffWriter(path, append=True) as tw:
                tw.write(chans[ch], description=json.dumps(meta), metadata=None,
                         extratags=[(285, "s", 0, _DISPLAY[ch], False)])


def _write_ome_tiff(out: Path, sim: dict) -> None:
    import xml.etree.ElementTree as ET

    import tifffile

    folder = out / "ome_tiff"
    folder.mkdir(exist_ok=True)
    nt, nz, ps = sim["nt"], sim["nz"], sim["pixel_size_um"]
    keys = sorted({(r, n) for (_, r, n, _) in sim["frames"]})
    for region, n in keys:
        first = sim["frames"][(0, region, n, 0)][LEFT]
        path = folder / f"{region}_{n}.ome.tiff"
        chans = _channels(sim)
        nc = len(chans)
        tifffile.imwrite(path, shape=(nt, nz, nc, *first.shape), dtype=first.dtype, ome=True, metadata={
            "axes": "TZCYX", "Channel": {"Name": [_DISPLAY[c] for c in chans]},
            "PhysicalSizeX": ps, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": ps,
            "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": sim["dz_um"], "PhysicalSizeZUnit": "µm"})
        stack = tifffile.memmap(path, mode="r+")
        stack.shape = (nt, nz, nc, *first.shape)
        for t in range(nt):
            for z in range(nz):
                for c, ch in enumerate(chans):
                    stack[t, z, c] = sim["frames"][(t, region, n, z)][ch]
        stack.flush()
        del stack
        # the Plane table Squid adds once the stack's last plane is written
        with tifffile.TiffFile(path) as tif:
            root = ET.fromstring(tif.ome_metadata)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        ET.register_namespace("", ns.strip("{}"))
        pixels = root.find(f"{ns}Image/{ns}Pixels")
        x, y = sim["xy_mm"][(region, n)]
        for t in range(nt):
            for c in range(nc):
                for z in range(nz):
                    ET.SubElement(pixels, f"{ns}Plane", {
                        "TheT": str(t), "TheZ": str(z), "TheC": str(c), "PositionX": str(x),
                        "PositionXUnit": "mm", "PositionY": str(y), "PositionYUnit": "mm",
                        "PositionZ": str(sim["z_um"][z]), "PositionZUnit": "µm",
                        "DeltaT": str(60.0 * t)})
        xml = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
        tifffile.tiffcomment(path, xml.encode("utf-8"))


def _is_well(name: str) -> bool:
    head = name.rstrip("0123456789")
    return bool(head) and head.isalpha() and head.isupper() and len(head) < len(name)


def _write_zarr(out: Path, sim: dict) -> None:
    import zarr
    from zarr.codecs import BloscCodec, BytesCodec, TransposeCodec

    nt, nz, ps = sim["nt"], sim["nz"], sim["pixel_size_um"]
    keys = sorted({(r, n) for (_, r, n, _) in sim["frames"]})
    hcs = all(_is_well(r) for r, _ in keys)

    def group_json(path: Path, attrs: dict) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "zarr.json").write_text(json.dumps(
            {"zarr_format": 3, "node_type": "group", "attributes": attrs}, indent=2))

    if hcs:
        rows = sorted({r.rstrip("0123456789") for r, _ in keys})
        cols = sorted({int(r[len(r.rstrip("0123456789")):]) for r, _ in keys})
        wells = sorted({r for r, _ in keys})
        group_json(out / "plate.ome.zarr", {"ome": {"version": "0.5", "plate": {
            "version": "0.5", "name": "plate", "rows": [{"name": r} for r in rows],
            "columns": [{"name": str(c)} for c in cols],
            "wells": [{"path": f"{w.rstrip('0123456789')}/{w[len(w.rstrip('0123456789')):]}",
                       "rowIndex": rows.index(w.rstrip("0123456789")),
                       "columnIndex": cols.index(int(w[len(w.rstrip('0123456789')):]))}
                      for w in wells]}}})
    for region, n in keys:
        first = sim["frames"][(0, region, n, 0)][LEFT]
        if hcs:
            row, col = region.rstrip("0123456789"), region[len(region.rstrip("0123456789")):]
            well = out / "plate.ome.zarr" / row / col
            group_json(well, {"ome": {"version": "0.5", "well": {
                "version": "0.5", "images": [{"path": str(f)} for f in range(sim["n_fovs"])]}}})
            group = well / str(n)
        else:
            group = out / "zarr" / region / f"fov_{n}.ome.zarr"
        chans = _channels(sim)
        shape = (nt, len(chans), nz, *first.shape)
        arr = zarr.create_array(
            str(group / "0"), shape=shape, chunks=(1, 1, 1, *first.shape), dtype=first.dtype,
            filters=[TransposeCodec(order=(4, 3, 2, 1, 0))], serializer=BytesCodec(endian="little"),
            compressors=[BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")], fill_value=0,
            zarr_format=3)
        for t in range(nt):
            for z in range(nz):
                for c, ch in enumerate(chans):
                    arr[t, c, z] = sim["frames"][(t, region, n, z)][ch]
        info = np.iinfo(first.dtype)
        group_json(group, {
            "ome": {"version": "0.5", "multiscales": [{
                "version": "0.5", "name": "0",
                "axes": [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
                         {"name": "z", "type": "space", "unit": "micrometer"},
                         {"name": "y", "type": "space", "unit": "micrometer"},
                         {"name": "x", "type": "space", "unit": "micrometer"}],
                "datasets": [{"path": "0", "coordinateTransformations": [
                    {"type": "scale", "scale": [60.0, 1.0, sim["dz_um"], ps, ps]}]}],
                "coordinateTransformations": [{"type": "identity"}]}],
                "omero": {"name": "0", "version": "0.5", "channels": [
                    {"label": _DISPLAY[ch], "active": True, "color": "FFFFFF",
                     "window": {"start": 0, "end": int(info.max), "min": 0, "max": int(info.max)}}
                    for ch in chans]}},
            "_squid": {"structure": "5D-TCZYX", "pixel_size_um": ps, "z_step_um": sim["dz_um"],
                       "time_increment_s": 60.0, "chunk_mode": "full_frame", "compression": "fast",
                       "shape": list(shape), "dtype": str(first.dtype), "is_hcs": hcs,
                       "acquisition_complete": True}})


def write_layout(out_dir: str | Path, sim: dict, layout: str) -> Path:
    """Write the frames of :func:`simulate_squid_frames` as one acquisition folder.

    Parameters
    ----------
    out_dir : str or Path
        Acquisition folder to create.
    sim : dict
        Output of :func:`simulate_squid_frames`.
    layout : {"octopi", "individual", "multipage", "ome_tiff", "zarr"}
        ``octopi``: legacy Octopi names ``{t}/{region}_{i}_{j}_{k}_{channel}.tiff`` with each
        region's FOVs in one grid column (i = FOV index, j = 0), ``configurations.xml``;
        ``individual``: Squid INDIVIDUAL_IMAGES; ``multipage``: MULTI_PAGE_TIFF;
        ``ome_tiff``: OME_TIFF; ``zarr``: ZARR_V3 (plate layout when every region is a well
        name, else one store per FOV). Squid layouts get ``acquisition_channels.yaml``; all get
        ``acquisition parameters.json``, ``{t}/coordinates.csv``, done files and
        ``truth/simulation.json``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    out = Path(out_dir)
    squid = layout != "octopi"
    _write_common(out, sim, squid)
    _timepoint_folders(out, sim, squid)
    if layout in ("octopi", "individual"):
        _write_individual(out, sim, legacy=layout == "octopi")
    elif layout == "multipage":
        _write_multipage(out, sim)
    elif layout == "ome_tiff":
        _write_ome_tiff(out, sim)
    else:
        _write_zarr(out, sim)
    if squid:
        (out / ".done").write_text("")
    return out


def simulate_squid_acquisition(out_dir: str | Path, layout: str = "individual", **kwargs) -> Path:
    """Simulate an acquisition (:func:`simulate_squid_frames` ``**kwargs``) and write it in
    ``layout`` (:func:`write_layout`)."""
    return write_layout(out_dir, simulate_squid_frames(**kwargs), layout)
