"""BeadNet: an M2U-Net that maps a frame to a bead-centre probability map.

The network (:class:`scopeflow.models.m2unet.M2UNet`, 1 input and 1 output channel) outputs
a per-pixel probability of a bead centre; non-maximum suppression of the map gives one
candidate per bead (:mod:`scopeflow.track.localize`), whatever the bead looks like. Its
training on simulated movies is :mod:`scopeflow.track.beadnet`.

Input normalisation (:func:`normalize_frame`): subtract a smooth background (Gaussian,
σ = 8 px), divide by the robust noise (MAD), compress with ``asinh(z / 3)``.

Shipped weights: ``scopeflow/models/beadnet.pt`` with the model card ``beadnet.md``,
loaded with ``torch.load(weights_only=True)`` after checking the card's ``sha256:`` line
(:func:`scopeflow.models.weights.load_network`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from scopeflow.models.weights import MODELS_DIR, load_network

__all__ = ["BeadNet", "default_weights", "normalize_frame"]


def default_weights() -> Path:
    """Path of the shipped weights ``scopeflow/models/beadnet.pt``."""
    return MODELS_DIR / "beadnet.pt"


def normalize_frame(image: np.ndarray) -> np.ndarray:
    """Network input: background-subtracted, noise-scaled, asinh-compressed float32 frame.

    Parameters
    ----------
    image : ndarray (y, x)
        Raw frame (any real dtype, any intensity scale).

    Returns
    -------
    ndarray (y, x) float32
        ``asinh(z / 3)`` with ``z = (image - gaussian(image, 8 px)) / (1.4826 MAD)``.
    """
    img = np.asarray(image, dtype=np.float32)
    bg = ndimage.gaussian_filter(img, 8.0, mode="reflect", truncate=3.0)
    hp = img - bg
    sub = hp[::2, ::2].ravel()
    med = float(np.median(sub))
    mad = float(np.median(np.abs(sub - med)))
    noise = 1.4826 * mad if mad > 0 else float(sub.std() or 1.0)
    return np.arcsinh((hp - med) / (3.0 * noise)).astype(np.float32)


class BeadNet:
    """Bead-centre probability map predictor (callable: frame -> map).

    Parameters
    ----------
    net : torch.nn.Module
        An :class:`~scopeflow.models.m2unet.M2UNet` (1 → 1) in eval mode.
    threads : int, optional
        torch intra-op threads during prediction (default: leave as is).
    weights : str, optional
        Path of the weights (recorded in provenance).
    sha256 : str, optional
        Their sha256.

    Examples
    --------
    >>> net = BeadNet.load()                       # doctest: +SKIP
    >>> prob = net(frame)                          # (y, x) float32 in [0, 1]
    """

    name = "beadnet"

    def __init__(self, net, threads: int | None = None, weights: str | None = None,
                 sha256: str | None = None) -> None:
        self.net = net.eval()
        self.threads = threads
        self.weights = weights
        self.sha256 = sha256

    @classmethod
    def load(cls, path: str | Path | None = None, *, verify: bool = True,
             threads: int | None = None) -> BeadNet:
        """Load weights after checking their sha256 against the model card.

        Parameters
        ----------
        path : str or Path, optional
            Weights file; its model card is the same path with suffix ``.md`` and must hold a
            ``sha256: <hex>`` line. Default: the shipped ``beadnet.pt``.
        verify : bool
            Check the sha256 (default True).
        threads : int, optional
            torch threads used by prediction.

        Raises
        ------
        scopeflow.models.weights.WeightsError
            Missing weights or card, no sha256 line, mismatch (corrupted or replaced file),
            or a file torch cannot load with ``weights_only=True``.
        """
        from scopeflow.models.m2unet import M2UNet

        path = Path(path) if path is not None else default_weights()
        net, _, digest = load_network(path, lambda meta: M2UNet(1, 1), verify=verify)
        return cls(net, threads=threads, weights=str(path), sha256=digest)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Bead-centre probability map (y, x) float32 in [0, 1] for a raw frame."""
        import torch

        x = normalize_frame(image)
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            with torch.inference_mode():
                t = torch.from_numpy(x)[None, None]
                out = torch.sigmoid(self.net(t))[0, 0].numpy()
        finally:
            if self.threads:
                torch.set_num_threads(old)
        return out.astype(np.float32)

    __call__ = predict

    def __repr__(self) -> str:
        return f"BeadNet(weights={self.weights!r}, sha256={self.sha256[:12] if self.sha256 else None})"
