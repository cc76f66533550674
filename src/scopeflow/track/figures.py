"""Report figure of a bead sample: trajectories, ensemble MSD with its fits, per-particle D."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scopeflow.io import tables
from scopeflow.io.atomic import atomic_path
from scopeflow.track.movie import read_movie

__all__ = ["tracks_figure"]


def tracks_figure(
    zarr_path: str | Path,
    tracks_parquet: str | Path,
    msd_parquet: str | Path,
    diffusion_parquet: str | Path,
    sample_parquet: str | Path,
    out_png: str | Path,
    *,
    sample: str,
    max_tracks: int = 2000,
) -> None:
    """Report figure: trajectories over the first frame, ensemble MSD (log-log) with the fit,
    and the per-particle D histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, attrs = read_movie(zarr_path)
    tr = tables.read_table(tracks_parquet)
    ens = tables.read_table(msd_parquet)
    per = tables.read_table(diffusion_parquet)
    s = tables.read_table(sample_parquet).iloc[0]
    lu, tu = s.get("length_unit", "um"), s.get("time_unit", "s")  # px / frame: uncalibrated
    L, T = {"um": "µm", "px": "px"}[lu], {"s": "s", "frame": "frames"}[tu]
    D, lag, msd = f"D_{lu}2_{tu}", f"lag_{tu}", f"msd_{lu}2"
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax = axes[0]
    if frames.shape[0]:
        img = np.asarray(frames[0], dtype=np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ids = tr["particle"].unique()[:max_tracks]
    cmap = plt.get_cmap("tab20")
    for k, (_, g) in enumerate(tr[tr["particle"].isin(ids)].groupby("particle", sort=False)):
        ax.plot(g["x_px"], g["y_px"], "-", lw=0.9, color=cmap(k % 20))
    ps = attrs.get("pixel_size_um")
    ax.set_title(f"{len(ids)} tracks over frame 0 ("
                 + (f"{ps:.3g} µm/px)" if ps else "no pixel size)"))
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax = axes[1]
    if len(ens):
        ax.loglog(ens[lag], ens[msd], "o", ms=3, color="0.2", label="ensemble MSD")
        t = ens[lag].to_numpy()
        if np.isfinite(s[D]):
            ax.loglog(t, 4 * s[D] * t + s[f"msd_offset_{lu}2"], "-", color="C3",
                      label=f"4Dτ + c, D = {s[D]:.3g} {L}²/{tu}")
            ax.loglog(t, s[f"A_{lu}2_{tu}"] * t ** s["exponent"], "--", color="C0",
                      label=f"Aτ^n, n = {s['exponent']:.2f}")
        if s["fit_lags"] > 0:
            ax.axvspan(t[0], s["fit_lags"] / (s["fps"] if tu == "s" else 1.0), color="C3", alpha=0.08, label="fitted lags")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"lag τ ({T})")
    ax.set_ylabel(f"MSD ({L}²)")
    ax.set_title(f"ensemble MSD (drift-corrected), fit on {int(s['fit_lags'])} lags")
    ax = axes[2]
    d = per[D].to_numpy(float)
    d = d[np.isfinite(d) & (d > 0)]
    if len(d):
        ax.hist(d, bins=min(50, max(5, len(d) // 5)), color="0.3")
        ax.axvline(s[D], color="C3", label="ensemble D")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"D per particle ({L}²/{tu})")
    ax.set_title(f"per-particle D, n = {len(d)}")
    rate = f"at {s['fps']:.3g} fps" if tu == "s" else "(no frame rate)"
    fig.suptitle(f"sample {sample}: {int(s['n_frames'])} frames {rate}, "
                 f"{int(s['n_tracks'])} tracks, D = {s[D]:.4g} {L}²/{tu} "
                 f"({s['detector']})")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
