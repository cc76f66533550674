"""Choosing the z plane of a FOV to analyse from a z-stack (autofocus brackets, deliberate stacks).

The score of a plane is the project's FOV focus metric (:mod:`scopeflow.smear.qc.focus`, the tiled
``qc.focus_metric``, variance of the Laplacian by default) of its DPC image
``0.5 + (L − R)/(L + R)``. DPC is scale-free, so the score does not depend on the camera's bit
depth or on the (smooth) flatfield, which is estimated later from the chosen planes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.smear.qc.focus import DEFAULT_FOCUS_METRIC

__all__ = ["ZSTACK_MODES", "parse_zstack", "plane_focus", "select_plane"]

#: Named ``zstack`` choices; an integer z index is the third kind.
ZSTACK_MODES = ("best_focus", "all")


def parse_zstack(value) -> str | int:
    """``"best_focus"``, ``"all"`` or a z index (int >= 0) from a config or sheet value.

    Raises
    ------
    ScopeflowError
        Any other value (one line naming the key).
    """
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    text = str(value).strip().lower()
    if text in ZSTACK_MODES:
        return text
    if text.isdigit():
        return int(text)
    raise ScopeflowError(
        f"config key zstack: {value!r} is not best_focus, all or a z index (0, 1, ...)"
    )


def plane_focus(left: np.ndarray, right: np.ndarray, metric: str = DEFAULT_FOCUS_METRIC) -> float:
    """Focus score of one plane: the tiled focus metric of its DPC image.

    Parameters
    ----------
    left, right : numpy.ndarray
        Left- and right-half illumination images (y, x), any dtype (uint8/uint16 are scaled
        to [0, 1] first; the DPC does not depend on the scale).
    metric : str
        A name of :data:`scopeflow.smear.qc.focus.FOCUS_METRICS`.

    Returns
    -------
    float
        Higher = sharper.
    """
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.smear.qc.focus import FOCUS_METRICS, focus_metrics

    if metric not in FOCUS_METRICS:
        raise ScopeflowError(
            f"config key qc.focus_metric: unknown metric {metric!r}; use one of {sorted(FOCUS_METRICS)}"
        )
    return float(focus_metrics(dpc_octopi(left, right))[f"focus_{metric}"])


def select_plane(ks: Sequence[int], scores: Sequence[float] | None, zstack: str | int) -> list[int]:
    """The z indices of one FOV's stack to analyse.

    Parameters
    ----------
    ks : sequence of int
        z indices present, in order.
    scores : sequence of float or None
        Focus score of each plane (needed for ``best_focus`` with more than one plane).
    zstack : "best_focus", "all" or int
        ``best_focus``: the plane with the highest score (the lowest k of ties; NaN scores
        never win unless all are NaN); ``all``: every plane; an int: that z index.

    Returns
    -------
    list of int
        Chosen z indices.

    Raises
    ------
    ScopeflowError
        The z index is not in the stack.
    """
    ks = [int(k) for k in ks]
    if zstack == "all" or len(ks) == 1 and zstack == "best_focus":
        return ks
    if zstack == "best_focus":
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(ks),):
            raise ValueError(f"{len(ks)} planes but {s.shape} scores")
        s = np.where(np.isfinite(s), s, -np.inf)
        return [ks[int(np.argmax(s))]]
    if int(zstack) not in ks:
        raise ScopeflowError(
            f"config key zstack: z index {zstack} is not in the stack (z indices {ks}); "
            "use best_focus, all or an index present"
        )
    return [int(zstack)]
