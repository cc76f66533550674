"""Segmentation: predictors (classical, U-Net) and the chunked machinery that runs them."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["METHODS", "make_predictor"]

#: Segmentation methods accepted by :func:`make_predictor`.
METHODS = ("classical", "unet")


def _accepts(cls, name: str) -> bool:
    """Whether ``cls(...)`` takes a keyword argument called ``name`` explicitly."""
    return name in inspect.signature(cls).parameters


def make_predictor(method: str, **kwargs: Any):
    """Build a per-tile predictor by method name.

    Parameters
    ----------
    method : {"classical", "unet"}
        ``"classical"``: :class:`scopeflow.segment.classical.ClassicalPredictor`;
        ``"unet"``: :class:`scopeflow.segment.unet.UNetPredictor` (imported lazily, so
        torch is only loaded when it is used).
    **kwargs
        Passed to the predictor's constructor. ``pixel_size_um`` is common to all
        methods but passed on only to predictors whose constructor takes it (a U-Net
        works at the pixel size it was trained at and has no such parameter).

    Returns
    -------
    Predictor
        An object satisfying :class:`scopeflow.segment.base.Predictor`.

    Raises
    ------
    ValueError
        For an unknown method name.
    """
    key = str(method).strip().lower()
    if key == "classical":
        from scopeflow.segment.classical import ClassicalPredictor

        return ClassicalPredictor(**kwargs)
    if key == "unet":
        from scopeflow.segment.unet import UNetPredictor

        if "pixel_size_um" in kwargs and not _accepts(UNetPredictor, "pixel_size_um"):
            kwargs = {k: v for k, v in kwargs.items() if k != "pixel_size_um"}
        return UNetPredictor(**kwargs)
    raise ValueError(f"unknown segmentation method {method!r}; choose one of: {', '.join(METHODS)}")
