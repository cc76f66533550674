"""Quality-control thresholds: defaults (the ``qc:`` section of config.yaml) and checking."""

from __future__ import annotations

from collections.abc import Mapping

from scopeflow.errors import ScopeflowError

#: Defaults of every ``qc.*`` config key; workflow/schemas/config.schema.yaml repeats them
#: with descriptions (a test keeps the two equal).
QC_DEFAULTS: dict = {
    # per cell, relative to the sample (non-border cells) or to the cell's FOV
    "min_area_ratio": 0.4,
    "max_area_ratio": 2.0,
    "min_solidity": 0.90,
    "max_concavity_rel": 0.12,
    "exclude_border": True,
    "min_focus_rel": 0.3,
    "max_focus_rel": 10.0,
    "min_contrast_rel": 0.3,
    "max_saturated_fraction": 0.05,
    "min_axis_ratio": None,
    "classifier": False,
    "classifier_threshold": 0.5,
    # per FOV
    "focus_metric": "laplacian_var",
    "extra_focus_metrics": [],  # computed in the measure jobs, not used by QC
    "min_focus_ratio": 0.3,
    "min_cells_per_fov": 10,
    "min_cells_ratio": 0.25,
    "drop_failed_fovs": True,
    # per sample
    "min_fraction_pass": 0.5,
    "min_fraction_fovs_pass": 0.5,
    "min_cells_pass": 100,
}


def qc_params(qc: Mapping | None = None) -> dict:
    """The QC thresholds: :data:`QC_DEFAULTS` updated with ``qc`` (the config's ``qc:``).

    Raises
    ------
    ScopeflowError
        For an unknown key or a focus metric that does not exist (one line naming the key).
    """
    from scopeflow.smear.qc.focus import FOCUS_METRICS

    given = dict(qc or {})
    unknown = sorted(set(given) - set(QC_DEFAULTS))
    if unknown:
        raise ScopeflowError(
            f"config key qc.{unknown[0]}: unknown QC setting; known: {', '.join(QC_DEFAULTS)}"
        )
    params = {**QC_DEFAULTS, **given}
    params["extra_focus_metrics"] = list(params["extra_focus_metrics"] or [])
    for key, names in (("focus_metric", [params["focus_metric"]]),
                       ("extra_focus_metrics", params["extra_focus_metrics"])):
        bad = [m for m in names if m not in FOCUS_METRICS]
        if bad:
            raise ScopeflowError(
                f"config key qc.{key}: {bad[0]!r} is not one of {', '.join(FOCUS_METRICS)}"
            )
    return params
