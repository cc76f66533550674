"""Focus metrics on brightfield images at known defocus (sephaCe data, 2 fields).

Each field has a "fine" series (in focus, about -10 and +10 um) and an "init" series (in
focus, about -24 and +25 um); the stage z is in the file name and the middle z is in focus
(``shared/data/sephace_brightfield_defocus/SOURCE.md``). For every metric of
``scopeflow.smear.qc.focus`` (tiled, as stored in the FOV table, and whole-image) this prints,
per series, the scores, whether the in-focus image ranks first, each defocused image's
ratio to the in-focus score, and whether in-focus > +-10 um > +-25 um holds per field
(every +-10 um ratio above every +-25 um ratio).

Run: ``python benchmarks/focus_qc.py`` (a few seconds).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DATA = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data")) / "sephace_brightfield_defocus"


def defocus_series(root: Path = DATA) -> dict[tuple[str, str], list[tuple[float, Path]]]:
    """{(set, "fine"|"init"): [(z offset from the in-focus image (um), path), ...] sorted by z}."""
    series = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for kind in ("fine", "init"):
            files = []
            for f in folder.glob(f"{kind}_*.png"):
                m = re.search(r"-Z(\d+(?:\.\d+)?)\.png$", f.name)
                if m:
                    files.append((float(m.group(1)), f))
            files.sort()
            if len(files) == 3:
                z0 = files[1][0]  # the middle plane is in focus
                series[(folder.name, kind)] = [(round(z - z0, 2), f) for z, f in files]
    return series


def main() -> None:
    import imageio.v3 as iio

    from scopeflow.smear.qc.focus import DEFAULT_FOCUS_METRIC, FOCUS_METRICS, focus_metrics

    series = defocus_series()
    images = {key: [(dz, iio.imread(f)) for dz, f in files] for key, files in series.items()}
    print(f"{len(series)} series; default metric: {DEFAULT_FOCUS_METRIC} (tiled 128 px, 90th percentile)")
    for mode, tile in (("tiled", 128), ("whole-image", None)):
        print(f"\n== {mode} ==")
        for name in FOCUS_METRICS:
            col = f"focus_{name}"
            ratios = {}
            best_all = True
            print(f"{name}:")
            for key, planes in images.items():
                scores = [focus_metrics(img, tile_px=tile)[col] for _, img in planes]
                infocus = scores[1]
                rank = np.argsort(scores)[::-1]
                best = rank[0] == 1
                best_all &= bool(best)
                r = [s / infocus if infocus > 0 else np.nan for s in scores]
                ratios[key] = (r[0], r[2])
                dz = [dz for dz, _ in planes]
                print(f"  {key[0]} {key[1]}: z {dz[0]:+.1f}/0/{dz[2]:+.1f} um scores "
                      f"{scores[0]:.4g}/{scores[1]:.4g}/{scores[2]:.4g}; in focus best: {best}; "
                      f"ratio to in focus {r[0]:.3f} / {r[2]:.3f}")
            order = []
            for s in sorted({k[0] for k in images}):
                fine, init = ratios.get((s, "fine")), ratios.get((s, "init"))
                if fine and init:
                    order.append(min(fine) > max(init) and max(fine) < 1)
            ten = [v for k, rr in ratios.items() if k[1] == "fine" for v in rr]
            twenty5 = [v for k, rr in ratios.items() if k[1] == "init" for v in rr]
            print(f"  -> in focus best in all {len(images)} series: {best_all}; "
                  f"max ratio +-10 um {max(ten):.3f}, +-25 um {max(twenty5):.3f}; "
                  f"in focus > +-10 > +-25 in {sum(order)}/{len(order)} fields")


if __name__ == "__main__":
    main()
