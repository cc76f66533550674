"""QC is useful on real Octopi DPC images: kept cells match the reference masks better.

U-Net segmentation (shipped weights, 1 CPU thread) of dpc_1024_00 (one sample, one FOV)
and the 10 harness crops (one sample of 10 FOVs), measured and flagged as the workflow
does (sample-relative thresholds, FOV verdicts); each predicted cell's best IoU with a
reference instance (binary masks -> 4-connected instances) scores the verdicts. The same
numbers are printed by benchmarks/qc_usefulness.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

PIXEL_SIZE_UM = 0.333


@pytest.fixture(scope="module")
def scored_cells():
    import os
    from pathlib import Path

    torch = pytest.importorskip("torch")
    import imageio.v3 as iio

    from scopeflow.qc.usefulness import best_iou, flag_sample
    from scopeflow.segment import make_predictor
    from scopeflow.segment.chunked import segment_image
    from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS

    repo = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", repo.parent / "shared" / "data"))
    big, harness = data / "octopi_rbc_dpc_m2unet", data / "octopi_rbc_dpc_harness"
    if not big.is_dir() or not harness.is_dir():
        pytest.skip(f"shared Octopi data not found under {data}")
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("shipped U-Net weights missing")
    samples = {"octopi_1024": [("dpc_1024_00", big / "images/dpc_1024_00.png",
                                big / "masks/dpc_1024_00_mask.png")]}
    samples["harness"] = [(p.name[:-8], p, harness / "masks" / f"{p.name[:-8]}_mask.png")
                          for p in sorted((harness / "images").glob("*_dpc.png"))]
    assert len(samples["harness"]) == 10
    old = torch.get_num_threads()
    predictor = make_predictor("unet", device="cpu", threads=1)
    try:
        tables = []
        for sample, fovs in samples.items():
            imgs = [iio.imread(p).astype(np.float32) / 255 for _, p, _ in fovs]
            labels = [np.asarray(segment_image(i, predictor, None, num_workers=1)) for i in imgs]
            cells, fov_table = flag_sample(imgs, labels, [n for n, _, _ in fovs], PIXEL_SIZE_UM, sample=sample)
            cells["iou"] = np.concatenate([
                best_iou(lab, iio.imread(ref), cells.loc[cells["fov"] == name, "cell_id"].to_numpy())
                for (name, _, ref), lab in zip(fovs, labels)
            ])
            tables.append(cells)
    finally:
        torch.set_num_threads(old)
    return pd.concat(tables, ignore_index=True)


def test_qc_pass_cells_match_reference_better(scored_cells):
    from scopeflow.qc.usefulness import usefulness

    cells = scored_cells
    assert len(cells) > 3000
    interior = ~cells["touches_border"].to_numpy(bool)
    # headline: cells entirely inside the FOV (border cells are rejected by policy and their
    # reference masks are cut by the same edge, so IoU cannot judge them)
    s = usefulness(cells["iou"][interior], cells["qc_pass"][interior])
    print(f"\nnon-border cells: mean IoU kept {s['mean_iou_kept']:.3f} vs rejected "
          f"{s['mean_iou_rejected']:.3f} (delta {s['delta_mean_iou']:.3f}); "
          f"IoU>=0.8 cells kept {s['good_kept_fraction']:.3f} (n = {s['n']}, kept {s['n_kept']})")
    assert s["delta_mean_iou"] >= 0.15
    assert s["good_kept_fraction"] >= 0.90
    # every predicted cell, judged by the quality checks other than the border policy
    reasons = cells["qc_reason"].astype(str).str.split(";")
    keep = ~reasons.apply(lambda r: any(x and x != "border" for x in r)).to_numpy(bool)
    a = usefulness(cells["iou"], keep)
    print(f"all cells, reasons other than border: delta {a['delta_mean_iou']:.3f}, "
          f"IoU>=0.8 kept {a['good_kept_fraction']:.3f} (n = {a['n']})")
    assert a["delta_mean_iou"] >= 0.15 and a["good_kept_fraction"] >= 0.90


def test_every_reason_except_border_picks_worse_than_average_cells(scored_cells):
    cells = scored_cells
    mean_kept = cells.loc[cells["qc_pass"], "iou"].mean()
    reasons = cells["qc_reason"].astype(str).str.split(";")
    for reason in ("size", "clump"):
        sel = reasons.apply(lambda r, x=reason: x in r)
        assert sel.sum() >= 20 and cells.loc[sel, "iou"].mean() < mean_kept - 0.15, reason
