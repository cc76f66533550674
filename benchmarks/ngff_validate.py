"""Validate every OME-Zarr under a results folder with the ecosystem's validators.

For each ``<results>/<sample>/<sample>.ome.zarr``: every group with NGFF metadata is opened by
``ome-zarr-models`` (strict: its ValidationWarning is an error, as ``ome-zarr-models validate``
does) and validated by ``yaozarrs`` (``validate_zarr_store``, warnings counted); files inside the
store that are not part of the Zarr hierarchy are listed. Prints one line per store and a total.

    python benchmarks/ngff_validate.py results [more results folders ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    from scopeflow.io.ngff_validate import foreign_files, validate_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    total = rejected = n_warn = n_foreign = 0
    for res in args.results:
        for store in sorted(res.glob("*/*.ome.zarr")):
            reports = validate_store(store)
            bad = [r for r in reports if r.models_error or r.yaozarrs_error]
            warn = sum(len(r.yaozarrs_warnings) for r in reports)
            foreign = foreign_files(store)
            total, rejected = total + len(reports), rejected + len(bad)
            n_warn, n_foreign = n_warn + warn, n_foreign + len(foreign)
            kinds = {}
            for r in reports:
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
            print(f"{store}: {len(reports)} groups ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}); "
                  f"rejected {len(bad)}, yaozarrs warnings {warn}, foreign files {len(foreign)}")
            for r in bad:
                print(f"  REJECTED {r.path}: {(r.models_error or r.yaozarrs_error).splitlines()[0]}")
    print(f"TOTAL: {rejected} of {total} groups rejected by ome-zarr-models/yaozarrs, "
          f"{n_warn} yaozarrs warnings, {n_foreign} foreign files")
    return 1 if rejected or n_warn or n_foreign else 0


if __name__ == "__main__":
    sys.exit(main())
