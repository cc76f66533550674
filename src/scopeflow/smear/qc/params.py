"""Quality-control thresholds: the ``qc:`` section of the config as one parameter object.

Every default is the schema's (``workflow/schemas/config.schema.yaml``, section ``qc``, read by
:func:`scopeflow.config_schema.schema_defaults`); each threshold has the same name in the
config (``qc.<name>``), here and in the tables' provenance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from scopeflow.config_schema import schema_defaults
from scopeflow.errors import ScopeflowError

_SCHEMA = schema_defaults("qc")


def _default(name: str):
    """A field whose default is the schema's for ``qc.<name>``."""
    value = _SCHEMA[name]
    if isinstance(value, list):
        return field(default=tuple(value))
    return field(default=value)


@dataclass(frozen=True)
class QCParams:
    """The ``qc.*`` thresholds (meaning of each: the config schema's description).

    Cell flags are relative to the sample's median (non-border cells) or to the cell's FOV;
    FOV verdicts to the sample's median FOV; the gate is per sample.
    """

    # per cell
    min_area_ratio: float = _default("min_area_ratio")
    max_area_ratio: float = _default("max_area_ratio")
    min_solidity: float = _default("min_solidity")
    max_concavity_rel: float = _default("max_concavity_rel")
    exclude_border: bool = _default("exclude_border")
    min_focus_rel: float = _default("min_focus_rel")
    max_focus_rel: float = _default("max_focus_rel")
    min_contrast_rel: float = _default("min_contrast_rel")
    max_saturated_fraction: float = _default("max_saturated_fraction")
    min_axis_ratio: float | None = _default("min_axis_ratio")
    classifier: bool = _default("classifier")
    classifier_threshold: float = _default("classifier_threshold")
    # per FOV
    focus_metric: str = _default("focus_metric")
    extra_focus_metrics: tuple[str, ...] = _default("extra_focus_metrics")  # measure jobs only
    min_focus_ratio: float = _default("min_focus_ratio")
    min_cells_per_fov: int = _default("min_cells_per_fov")
    min_cells_ratio: float = _default("min_cells_ratio")
    drop_failed_fovs: bool = _default("drop_failed_fovs")
    # per sample
    min_fraction_pass: float = _default("min_fraction_pass")
    min_fraction_fovs_pass: float = _default("min_fraction_fovs_pass")
    min_cells_pass: int = _default("min_cells_pass")

    def __post_init__(self) -> None:
        from scopeflow.smear.qc.focus import FOCUS_METRICS

        object.__setattr__(self, "extra_focus_metrics", tuple(self.extra_focus_metrics or ()))
        for key, names in (("focus_metric", [self.focus_metric]),
                           ("extra_focus_metrics", self.extra_focus_metrics)):
            bad = [m for m in names if m not in FOCUS_METRICS]
            if bad:
                raise ScopeflowError(
                    f"config key qc.{key}: {bad[0]!r} is not one of {', '.join(FOCUS_METRICS)}"
                )

    @classmethod
    def from_config(cls, qc: Mapping | QCParams | None = None) -> QCParams:
        """The thresholds of a config's ``qc:`` mapping (missing keys: the defaults).

        Raises
        ------
        ScopeflowError
            For an unknown key or a focus metric that does not exist (one line naming the key).
        """
        if isinstance(qc, QCParams):
            return qc
        given = dict(qc or {})
        unknown = sorted(set(given) - set(_SCHEMA))
        if unknown:
            raise ScopeflowError(
                f"config key qc.{unknown[0]}: unknown QC setting; known: {', '.join(_SCHEMA)}"
            )
        return cls(**given)

    def as_dict(self) -> dict:
        """The thresholds as the config writes them (lists, not tuples): for JSON records."""
        out = dataclasses.asdict(self)
        out["extra_focus_metrics"] = list(out["extra_focus_metrics"])
        return out


#: Defaults of every ``qc.*`` config key, as a dict (the schema's values).
QC_DEFAULTS: dict = QCParams().as_dict()


def qc_params(qc: Mapping | QCParams | None = None) -> dict:
    """The QC thresholds as a dict: :class:`QCParams` of ``qc`` (the config's ``qc:``).

    Raises
    ------
    ScopeflowError
        For an unknown key or a focus metric that does not exist (one line naming the key).
    """
    return QCParams.from_config(qc).as_dict()
