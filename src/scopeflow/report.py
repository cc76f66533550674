"""Figures for the Snakemake report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scopeflow.io import ome_zarr


def _count_grid(fovs: pd.DataFrame) -> np.ndarray | None:
    """Cells per FOV laid out on the stage grid (rows i, columns j), or None without a grid."""
    if not {"i", "j"} <= set(fovs.columns) or fovs["i"].isna().any() or fovs["j"].isna().any():
        return None
    i = fovs["i"].astype(int).to_numpy()
    j = fovs["j"].astype(int).to_numpy()
    grid = np.full((i.max() + 1, j.max() + 1), np.nan)
    for a, b, n in zip(i, j, fovs["n_cells"].to_numpy()):
        grid[a, b] = n if np.isnan(grid[a, b]) else grid[a, b] + n
    return grid


def sample_overview_figure(
    zarr_path: str | Path, cells_path: str | Path, fovs_path: str | Path, out_png: str | Path,
    *, sample: str, crop: int = 512,
) -> None:
    """Write the per-sample overview PNG: a DPC crop with cell outlines, counts per FOV,
    and histograms of cell area and circularity (border cells excluded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    cells = pd.read_parquet(cells_path)
    fovs = pd.read_parquet(fovs_path)
    names = ome_zarr.fov_names(zarr_path)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.5))
    if names:
        fov = names[0]
        dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc")[:crop, :crop])
        labels = ome_zarr.read_labels(zarr_path, fov)[:crop, :crop]
        lo, hi = np.percentile(dpc, [1, 99])
        rgb = np.repeat(np.clip((dpc - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, axis=2)
        rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.2, 0.1)
        axes[0].imshow(rgb)
        axes[0].set_title(f"{fov}: DPC + cells (top-left {crop} px)")
    axes[0].axis("off")
    grid = _count_grid(fovs)
    if grid is not None:
        im = axes[1].imshow(grid, cmap="viridis")
        fig.colorbar(im, ax=axes[1], label="cells")
        axes[1].set_xticks(range(grid.shape[1]))
        axes[1].set_yticks(range(grid.shape[0]))
        axes[1].set_xlabel("FOV column j")
        axes[1].set_ylabel("FOV row i")
        axes[1].set_title("cells per FOV (stage grid)")
    else:
        axes[1].bar(range(len(fovs)), fovs["n_cells"])
        axes[1].set_xlabel("FOV")
        axes[1].set_ylabel("cells")
        axes[1].set_title("cells per FOV")
    interior = cells.loc[~cells["touches_border"]] if len(cells) else cells
    if len(interior):
        axes[2].hist(interior["area_um2"], bins=50, color="0.3")
        axes[3].hist(interior["circularity"].clip(0, 1.2), bins=50, color="0.3")
    axes[2].set_xlabel("area (µm²)")
    axes[2].set_title(f"cell area, n = {len(interior)}")
    axes[3].set_xlabel("circularity 4πA/P²")
    axes[3].set_title("circularity")
    fig.suptitle(f"sample {sample}: {len(fovs)} FOVs, {len(cells)} cells")
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
