"""Parasitemia from classified spots and QC-passing red cells, with exact intervals.

Definitions (per FOV and per sample):

- ``n_rbc_counted``: red cells that pass QC (``qc_pass`` of the cell table): the denominator.
- ``n_parasites``: spots called parasite that lie in a QC-passing red cell and are not flagged
  out of distribution (``ood``, :mod:`scopeflow.parasites.ood`: the classifier's probability
  means nothing there) (numerator and denominator count the same cells); ``n_parasites_all``
  also counts parasite calls outside counted cells (free parasites, rejected cells) and
  ``n_parasites_ood`` the parasite calls flagged ``ood`` (anywhere), both reported, not used.
- ``n_infected_rbc``: counted cells with at least one parasite call.
- ``parasites_per_ul = (n_parasites − fp_per_rbc·n_rbc) / sensitivity · rbc_per_ul / n_rbc``,
  floored at 0. With the defaults (``sensitivity`` 1, ``fp_per_5e6_rbc`` 0) this is Octopi's
  *positives per 5·10⁶ RBC* scaled to ``rbc_per_ul`` (5·10⁶/µL ≈ 1 µL of blood).
- 95 % interval: the exact (Garwood) Poisson interval of the expected count,
  ``[χ²(α/2; 2k)/2, χ²(1 − α/2; 2k + 2)/2]``, mapped through the same formula (the RBC count
  is treated as exact: it is ~10⁵–10⁶ cells, its relative error is far below the count's).
  When the sensitivity / false-call rate are measured values (``sensitivity_n`` parasites,
  ``fp_n_rbc`` cells), their exact intervals are folded in (Bonferroni, see
  :func:`density_interval`).
- ``percent_parasitized = 100·n_infected_rbc / n_rbc_counted`` with a Clopper–Pearson interval.
- ``hyperparasitaemia``: ``percent_parasitized > hyper_percent`` (config; WHO severe malaria:
  > 10 %, low-transmission areas > 5 %; definitions differ).
- ``parasites_detected``: the interval's lower bound exceeds ``fp_budget_per_ul`` (the density
  a negative slide may show from false positives alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where used: a sample without fluorescence needs none
    import pandas as pd

__all__ = [
    "PARASITEMIA_DEFAULTS",
    "clopper_pearson",
    "density_interval",
    "parasitemia_row",
    "parasitemia_tables",
    "poisson_interval",
]

#: Defaults of the ``parasites`` config keys used here (workflow/schemas/config.schema.yaml).
PARASITEMIA_DEFAULTS = {
    "rbc_per_ul": 5.0e6,
    "sensitivity": 1.0,
    "sensitivity_n": 0,
    "fp_per_5e6_rbc": 0.0,
    "fp_n_rbc": 0,
    "fp_budget_per_ul": 50.0,
    "hyper_percent": 5.0,
    "confidence": 0.95,
}


def poisson_interval(k, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) two-sided interval for a Poisson mean given count(s) ``k``.

    Returns
    -------
    (lower, upper) : numpy.ndarray
        float64, same shape as ``k``; lower = 0 when k = 0.
    """
    from scipy import stats  # imported when used: a skipped sample's job never needs it

    k = np.asarray(k, np.float64)
    a = 1.0 - float(confidence)
    lo = np.where(k > 0, stats.chi2.ppf(a / 2, 2 * np.maximum(k, 1e-300)) / 2, 0.0)
    hi = stats.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return lo, hi


def clopper_pearson(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval for a proportion k/n (NaN where n = 0)."""
    from scipy import stats

    k = np.asarray(k, np.float64)
    n = np.asarray(n, np.float64)
    a = 1.0 - float(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(a / 2, np.maximum(k, 1e-300), n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def density_interval(k, n_rbc, *, rbc_per_ul: float = 5e6, sensitivity: float = 1.0,
                     fp_per_5e6_rbc: float = 0.0, confidence: float = 0.95,
                     sensitivity_n: float = 0, fp_n_rbc: float = 0,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parasites per µL and its exact interval from ``k`` parasite calls over ``n_rbc`` cells.

    Parameters
    ----------
    k : array_like
        Parasite calls (in counted cells).
    n_rbc : array_like
        Counted red cells (> 0; 0 gives NaN).
    rbc_per_ul : float
        Red cells per µL of blood (5·10⁶).
    sensitivity : float
        Probability that a parasite is detected and called (the detection path's, measured on
        slides of known parasitemia); 1 = no correction.
    fp_per_5e6_rbc : float
        Expected false calls per 5·10⁶ counted cells (measured on negative slides); 0 = none.
    confidence : float
        Two-sided confidence level.
    sensitivity_n : float
        Parasites the sensitivity was measured on (0: taken as exact). Then the interval also
        spans the Clopper–Pearson interval of the sensitivity.
    fp_n_rbc : float
        Cells the false-call rate was measured on (0: taken as exact). Then the interval also
        spans the Garwood interval of the false-call rate.

    Returns
    -------
    (estimate, lower, upper) : numpy.ndarray
        Parasites per µL, floored at 0.

    Notes
    -----
    With measured (uncertain) calibration values, each of the m uncertain quantities (count,
    sensitivity, false-call rate) gets a ``1 − (1 − confidence)/m`` interval (Bonferroni), and
    ``lower = (k_lo − f_hi·n)/s_hi``, ``upper = (k_hi − f_lo·n)/s_lo``: the result covers the
    truth with probability ≥ ``confidence`` whenever the calibration applies.
    """
    k = np.asarray(k, np.float64)
    n = np.asarray(n_rbc, np.float64)
    m = 1 + (sensitivity_n > 0) + (fp_n_rbc > 0)
    level = 1.0 - (1.0 - float(confidence)) / m
    lo, hi = poisson_interval(k, level)
    fp = float(fp_per_5e6_rbc) / 5e6
    f_lo = f_hi = fp
    if fp_n_rbc > 0:
        a, b = poisson_interval(fp * float(fp_n_rbc), level)
        f_lo, f_hi = float(a) / float(fp_n_rbc), float(b) / float(fp_n_rbc)
    s = float(sensitivity)
    s_lo = s_hi = s
    if sensitivity_n > 0 and s <= 1:
        a, b = clopper_pearson(round(s * float(sensitivity_n)), float(sensitivity_n), level)
        s_lo, s_hi = max(float(a), 1e-9), float(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n > 0, float(rbc_per_ul) / n, np.nan)
        est = np.maximum(k - fp * n, 0.0) * scale / s
        low = np.maximum(lo - f_hi * n, 0.0) * scale / s_hi
        up = np.maximum(hi - f_lo * n, 0.0) * scale / s_lo
    return est, low, up


def parasitemia_row(spots: pd.DataFrame, cells: pd.DataFrame, params: Mapping | None = None
                    ) -> dict:
    """Parasitemia of one group (a FOV or a sample) from its spots and cells.

    Parameters
    ----------
    spots : pandas.DataFrame
        Candidates with ``is_parasite`` (bool), ``cell_id`` (0 = outside cells) and optionally
        ``ood`` (bool; flagged calls are not counted); if a ``fov`` column is present, cells
        are matched on (``fov``, ``cell_id``).
    cells : pandas.DataFrame
        Cell table with ``cell_id`` and ``qc_pass`` (and ``fov`` when spots have it).
    params : mapping, optional
        Keys of :data:`PARASITEMIA_DEFAULTS`.

    Returns
    -------
    dict
        ``n_rbc_counted, n_spots, n_parasites_all, n_parasites_ood, n_parasites, n_infected_rbc,
        parasites_per_ul, parasites_per_ul_low, parasites_per_ul_high, percent_parasitized,
        percent_parasitized_low, percent_parasitized_high, hyperparasitaemia,
        parasites_detected``.
    """
    import pandas as pd

    p = {**PARASITEMIA_DEFAULTS, **dict(params or {})}
    keys = ["fov", "cell_id"] if "fov" in spots.columns and "fov" in cells.columns else ["cell_id"]
    counted = cells.loc[cells["qc_pass"].astype(bool), keys].drop_duplicates()
    n_rbc = int(len(counted))
    call = spots["is_parasite"].astype(bool)
    ood = spots["ood"].astype(bool) if "ood" in spots.columns else pd.Series(False, spots.index)
    pos = spots[call & ~ood & (spots["cell_id"] > 0)]
    in_counted = pos.merge(counted, on=keys, how="inner")
    k = int(len(in_counted))
    n_inf = int(len(in_counted[keys].drop_duplicates()))
    est, lo, hi = density_interval(k, n_rbc, rbc_per_ul=p["rbc_per_ul"],
                                   sensitivity=p["sensitivity"],
                                   fp_per_5e6_rbc=p["fp_per_5e6_rbc"],
                                   confidence=p["confidence"],
                                   sensitivity_n=float(p["sensitivity_n"]),
                                   fp_n_rbc=float(p["fp_n_rbc"]))
    plo, phi = clopper_pearson(n_inf, n_rbc, p["confidence"])
    pct = 100.0 * n_inf / n_rbc if n_rbc else float("nan")
    return {
        "n_rbc_counted": n_rbc,
        "n_spots": int(len(spots)),
        "n_parasites_all": int(spots["is_parasite"].astype(bool).sum()),
        "n_parasites_ood": int((call & ood).sum()),
        "n_parasites": k,
        "n_infected_rbc": n_inf,
        "parasites_per_ul": float(est),
        "parasites_per_ul_low": float(lo),
        "parasites_per_ul_high": float(hi),
        "percent_parasitized": float(pct),
        "percent_parasitized_low": float(100 * plo),
        "percent_parasitized_high": float(100 * phi),
        "hyperparasitaemia": bool(n_rbc > 0 and pct > float(p["hyper_percent"])),
        "parasites_detected": bool(np.isfinite(lo) and lo > float(p["fp_budget_per_ul"])),
    }


def parasitemia_tables(spots: pd.DataFrame, cells: pd.DataFrame, sample: str,
                       params: Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-FOV and per-sample parasitemia tables.

    Parameters
    ----------
    spots : pandas.DataFrame
        All candidates of the sample (``fov``, ``cell_id``, ``is_parasite``).
    cells : pandas.DataFrame
        The sample's cell table (``fov``, ``cell_id``, ``qc_pass``).
    sample : str
        Sample name (first column of both tables).
    params : mapping, optional
        Keys of :data:`PARASITEMIA_DEFAULTS`.

    Returns
    -------
    (per_fov, per_sample) : pandas.DataFrame
        Columns ``sample``, (``fov``), then those of :func:`parasitemia_row`; per sample also
        ``status`` = ``"ok"``.
    """
    import pandas as pd

    fovs = sorted(set(cells["fov"]) | set(spots["fov"]))
    rows = []
    for f in fovs:
        r = parasitemia_row(spots[spots["fov"] == f], cells[cells["fov"] == f], params)
        rows.append({"sample": sample, "fov": f, **r})
    per_fov = pd.DataFrame(rows, columns=["sample", "fov", *_ROW_COLUMNS])
    per_sample = pd.DataFrame([{"sample": sample, "status": "ok",
                                **parasitemia_row(spots, cells, params)}])
    return per_fov, per_sample


#: The columns of :func:`parasitemia_row`, in its order (a test checks they agree).
_ROW_COLUMNS = ["n_rbc_counted", "n_spots", "n_parasites_all", "n_parasites_ood", "n_parasites",
                "n_infected_rbc", "parasites_per_ul", "parasites_per_ul_low", "parasites_per_ul_high",
                "percent_parasitized", "percent_parasitized_low", "percent_parasitized_high",
                "hyperparasitaemia", "parasites_detected"]
