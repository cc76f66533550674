"""Malaria parasitemia from the 405 nm fluorescence channel of Octopi smears.

One concept per module:

- :mod:`~scopeflow.parasites.classifier`: the parasite CNN ensemble on (N, 4, 31, 31) crops
  (3 fluorescence channels + DPC), its checked loader and scoring (calibrated probability,
  operating threshold, out-of-distribution flag).
- :mod:`~scopeflow.parasites.train`: cross-validated training of that ensemble
  (``scopeflow train-parasites``).
- :mod:`~scopeflow.parasites.ood`: the out-of-distribution flag (k nearest neighbours in the
  classifier's features, cross-validated threshold, ``scopeflow fit-parasite-ood``) and
  :func:`~scopeflow.parasites.ood.score_spots` (calls + flag from one pass).
- :mod:`~scopeflow.parasites.detect`: spot candidates in a fluorescence image (background
  removal, local maxima at the parasite scale) and the 31×31 crops around them.
- :mod:`~scopeflow.parasites.stage`: fluorescence ingest helpers (true bit depth), the
  fluorescence flatfield and the per-sample stage on paths.
- :mod:`~scopeflow.parasites.coverage`: simulated FOVs through the real path, slide-level
  coverage of the intervals, false calls on many negative cells (benchmarks).
- :mod:`~scopeflow.parasites.parasitemia`: parasites per µL with an exact Poisson interval,
  percent parasitized, hyperparasitaemia flag, per FOV and per sample.
"""
