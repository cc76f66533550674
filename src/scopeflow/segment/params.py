"""Segmentation settings: the ``segment:`` section of config.yaml, with one default each.

:class:`SegmentParams` holds every ``segment.*`` config key under the same name the library
(:func:`scopeflow.segment.make_predictor`, the segment stage) and the command line
(``scopeflow segment --method --chunk --threads --device --backend --precision``) use. Its
defaults are the ones ``workflow/schemas/config.schema.yaml`` states (a test keeps the two
equal); nothing else writes them.

:class:`~scopeflow.segment.unet.UNetPredictor` keeps ``backend="torch"`` as the default of
the bare model wrapper (the trained network itself, which any weights file has; an ONNX
export must be made for new weights), while the segment stage and ``scopeflow segment`` run
the U-Net with :data:`SEGMENT_DEFAULTS` (``backend: onnx``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from scopeflow.errors import ScopeflowError

__all__ = ["CHOICES", "SEGMENT_DEFAULTS", "SegmentParams"]

#: Allowed values of the enumerated keys (as in the config schema).
CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("classical", "unet"),
    "device": ("auto", "cpu", "cuda"),
    "backend": ("onnx", "torch"),
    "precision": ("fp32", "int8", "fp16"),
}


@dataclass(frozen=True)
class SegmentParams:
    """Settings of the chunked segmentation (config ``segment:``).

    Parameters
    ----------
    method : {"unet", "classical"}
        Per-tile predictor: the shipped M2U-Net, or DPC integration + Otsu + watershed.
    chunk : int
        Dask chunk edge in pixels (a multiple of 16); labels do not depend on it.
    threads : int
        Threads of a segmentation job (dask and the U-Net's inference).
    device : {"auto", "cpu", "cuda"}
        Device of the U-Net.
    backend : {"onnx", "torch"}
        U-Net inference engine.
    precision : {"fp32", "int8", "fp16"}
        U-Net numerical precision (int8: backend onnx on the CPU; fp16: backend torch on CUDA).
    """

    method: str = "unet"
    chunk: int = 1024
    threads: int = 2
    device: str = "auto"
    backend: str = "onnx"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ScopeflowError(f"config key segment.{key}: {value!r} is not one of {', '.join(allowed)}")
        if int(self.chunk) < 16 or int(self.chunk) % 16:
            raise ScopeflowError(f"config key segment.chunk: {self.chunk} is not a multiple of 16 (>= 16)")
        if int(self.threads) < 1:
            raise ScopeflowError(f"config key segment.threads: {self.threads} must be at least 1")

    @classmethod
    def from_config(cls, segment: Mapping[str, Any] | None = None) -> SegmentParams:
        """Settings from the config's ``segment:`` mapping; absent keys take the defaults.

        Raises
        ------
        ScopeflowError
            One line naming an unknown key or a value that is not allowed.
        """
        given = dict(segment or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ScopeflowError(
                f"config key segment.{unknown[0]}: unknown segmentation setting; known: {', '.join(known)}"
            )
        return cls(**given)

    def predictor_kwargs(self, threads: int | None = None) -> dict[str, Any]:
        """Keyword arguments of :func:`scopeflow.segment.make_predictor` besides the method.

        Parameters
        ----------
        threads : int, optional
            Threads of this job (default :attr:`threads`).

        Returns
        -------
        dict
            ``device``, ``threads``, ``backend``, ``precision`` for the U-Net; empty for the
            classical predictor (it has none of them).
        """
        if self.method != "unet":
            return {}
        return {"device": self.device, "threads": int(threads or self.threads), "backend": self.backend,
                "precision": self.precision}


#: The defaults of every ``segment.*`` key (``workflow/schemas/config.schema.yaml`` states them).
SEGMENT_DEFAULTS: dict[str, Any] = asdict(SegmentParams())
