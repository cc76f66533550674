"""Parasitemia figure for the Snakemake report: spot gallery and per-FOV densities.

One PNG per sample: the crops of the highest-scoring spots and of the spots nearest the
operating threshold (fluorescence composited over DPC, 0.64·fluorescence + 0.36·DPC as Octopi
displays them, titled with ``p_parasite``), and the per-FOV parasites per µL with their 95 %
intervals beside the sample's value. A skipped sample gets a figure saying why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["composite", "parasite_figure"]


def composite(crop: np.ndarray) -> np.ndarray:
    """RGB uint8 (h, w, 3) display of one (4, h, w) uint8 crop: 0.64·fluorescence + 0.36·DPC."""
    c = np.asarray(crop, np.float32)
    img = 0.64 * c[:3].transpose(1, 2, 0) + 0.36 * c[3][:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def parasite_figure(gallery_npz: str | Path, per_fov: pd.DataFrame, per_sample: pd.DataFrame,
                    out_png: str | Path, *, sample: str = "") -> None:
    """Write the gallery + per-FOV parasitemia figure of one sample.

    Parameters
    ----------
    gallery_npz : path
        ``crops`` (N, 4, 31, 31) uint8, ``p`` (N,), ``kind`` (``top`` / ``near``),
        ``threshold`` (written by :func:`scopeflow.parasites.stage.parasites_sample`).
    per_fov, per_sample : pandas.DataFrame
        The parasitemia tables.
    out_png : path
        Output PNG.
    sample : str
        Title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(gallery_npz) as z:
        crops, p, kind, thr = z["crops"], z["p"], z["kind"], float(z["threshold"])
    row = per_sample.iloc[0]
    fig = plt.figure(figsize=(12, 7.5))
    status = str(row.get("status", "ok"))
    if status != "ok" or crops.size == 0:
        fig.text(0.5, 0.5, f"{sample}: parasitemia {status if status != 'ok' else 'ok, no spots'}",
                 ha="center", va="center", fontsize=13)
    else:
        for block, (name, title) in enumerate((("top", "highest p_parasite"),
                                               ("near", f"nearest the threshold {thr:.2f}"))):
            idx = np.flatnonzero(kind == name)[:24]
            for n, i in enumerate(idx):
                ax = fig.add_axes([0.01 + (n % 8) * 0.075,
                                   0.90 - (block * 3 + n // 8 + 1) * 0.14 - block * 0.05,
                                   0.07, 0.12])
                ax.imshow(composite(crops[i]), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                col = "tab:red" if p[i] >= thr else "tab:blue"
                ax.set_title(f"{p[i]:.2f}", fontsize=8, color=col, pad=1)
            fig.text(0.01, 0.93 - block * 0.5, title + " (red: called parasite)", fontsize=10)
        ax = fig.add_axes([0.68, 0.12, 0.3, 0.75])
        if len(per_fov):
            y = np.arange(len(per_fov))
            est = per_fov["parasites_per_ul"].to_numpy(float)
            lo = per_fov["parasites_per_ul_low"].to_numpy(float)
            hi = per_fov["parasites_per_ul_high"].to_numpy(float)
            ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="k", ms=4,
                        label="FOV (95 % interval)")
            ax.set_yticks(y, [str(f) for f in per_fov["fov"]], fontsize=7)
        s_est, s_lo, s_hi = (float(row[k]) for k in ("parasites_per_ul", "parasites_per_ul_low",
                                                     "parasites_per_ul_high"))
        ax.axvspan(s_lo, s_hi, color="tab:red", alpha=0.2, label="sample 95 % interval")
        ax.axvline(s_est, color="tab:red", label="sample")
        ax.set_xlabel("parasites per µL")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(
            f"{sample}: {s_est:,.0f} /µL [{s_lo:,.0f}, {s_hi:,.0f}]\n"
            f"{int(row['n_parasites'])} parasites / {int(row['n_rbc_counted'])} QC-passing RBC, "
            f"{float(row['percent_parasitized']):.3f} % parasitized"
            + ("  HYPERPARASITAEMIA" if bool(row["hyperparasitaemia"]) else ""), fontsize=9)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
