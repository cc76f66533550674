"""BeadNet: a small U-Net that maps a frame to a bead-centre probability map.

The network (:class:`scopeflow.models.beadnet_net.BeadUNet`, 1 input and 1 output channel,
≈ 4.6 k multiply-adds per pixel) outputs a per-pixel probability of a bead centre; local
maxima of the map give one candidate per bead whatever the bead looks like (brightfield
rings with a bright or dark centre, absorbing discs, Airy and defocused fluorescent beads,
Gaussian spots). Its training on simulated frames is :mod:`scopeflow.track.beadnet`.

Scale: the network was trained on beads 2–13 px across. Frames of larger beads are reduced
by an integer block mean first (:func:`scale_for_diameter`: factor ``round(d / 8)``), so a
30 px ring is seen as a 7.5 px one; the candidates are mapped back to full-resolution
pixels, where cross-correlation with the movie's own template places them
(:mod:`scopeflow.track.appearance`). The reduction also divides the cost by the factor².

Input normalisation (:func:`normalize_frame`): subtract a smooth background (Gaussian,
σ = 8 px), divide by the robust noise (MAD), compress with ``asinh(z / 3)``.

Shipped weights: ``scopeflow/models/beadnet.pt`` with the model card ``beadnet.md``,
loaded with ``torch.load(weights_only=True)`` after checking the card's ``sha256:`` line
(:func:`scopeflow.models.weights.load_network`), and its ONNX export ``beadnet.onnx`` (own
``beadnet.onnx sha256:`` line; records the sha256 of the ``.pt`` it came from), run by ONNX
Runtime (:class:`scopeflow.models.runtime.OnnxRunner`) without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from scopeflow.models.weights import MODELS_DIR, WeightsError, card_sha256, verify_sha256

__all__ = ["BeadNet", "NET_DIAMETER", "default_weights", "downsample", "normalize_frame",
           "scale_for_diameter"]

#: bead diameter (px) the network sees best; larger beads are reduced towards it
NET_DIAMETER = 8.0


def default_weights() -> Path:
    """Path of the shipped weights ``scopeflow/models/beadnet.pt``."""
    return MODELS_DIR / "beadnet.pt"


def scale_for_diameter(diameter_px: float | None) -> int:
    """Integer reduction factor for beads ``diameter_px`` across: ``max(1, round(d / 8))``.

    The reduced beads are 4–12 px across (or smaller when the beads are below 4 px), inside
    the network's training range (2–13 px). None: 1.
    """
    if not diameter_px or not np.isfinite(diameter_px):
        return 1
    return max(1, int(round(float(diameter_px) / NET_DIAMETER)))


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over ``factor × factor`` pixels (edges padded by reflection), float32.

    Pixel (i, j) of the result covers full-resolution pixels ``factor·i … factor·i + factor-1``;
    its centre is at full-resolution coordinate ``factor·i + (factor - 1) / 2``.
    """
    img = np.asarray(image, dtype=np.float32)
    f = int(factor)
    if f <= 1:
        return img
    ny, nx = img.shape
    py, px = (-ny) % f, (-nx) % f
    if py or px:
        img = np.pad(img, ((0, py), (0, px)), mode="reflect")
    return img.reshape(img.shape[0] // f, f, img.shape[1] // f, f).mean(axis=(1, 3))


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


def _local_maxima(prob: np.ndarray, threshold: float, min_distance: int) -> np.ndarray:
    """(y, x) int of the maxima of ``prob`` ≥ ``threshold`` in a (2·min_distance+1)² window."""
    size = 2 * max(int(min_distance), 1) + 1
    mx = ndimage.maximum_filter(prob, size=size, mode="constant", cval=0.0)
    yx = np.argwhere((prob >= threshold) & (prob == mx))
    if len(yx) > 1:  # plateaus: keep one pixel per connected tie
        lab, n = ndimage.label((prob >= threshold) & (prob == mx))
        if n < len(yx):
            com = ndimage.center_of_mass(np.ones_like(prob), lab, np.arange(1, n + 1))
            yx = np.round(np.asarray(com)).reshape(-1, 2)
    return yx.astype(np.int64).reshape(-1, 2)


class BeadNet:
    """Bead-centre probability map predictor (callable: frame -> map) and candidate finder.

    Parameters
    ----------
    runner : callable
        Maps a float32 batch (N, 1, H, W), H and W multiples of 4, to logits (N, 1, H, W):
        a torch :class:`~scopeflow.models.beadnet_net.BeadUNet` wrapped by :meth:`load`, or an
        :class:`~scopeflow.models.runtime.OnnxRunner`.
    threads : int, optional
        torch intra-op threads during prediction (torch back end; default: leave as is).
    weights : str, optional
        Path of the weights (recorded in provenance).
    sha256 : str, optional
        Their sha256.
    backend : str
        ``"onnx"`` or ``"torch"``.

    Examples
    --------
    >>> net = BeadNet.load()                       # doctest: +SKIP
    >>> prob = net(frame)                          # (y, x) float32 in [0, 1]
    >>> yx, p = net.candidates(frame, 20.0)        # one (y, x) per bead, full-resolution px
    """

    name = "beadnet"

    def __init__(self, runner, threads: int | None = None, weights: str | None = None,
                 sha256: str | None = None, backend: str = "torch") -> None:
        if hasattr(runner, "eval"):
            runner = runner.eval()
        self.runner = runner
        self.threads = threads
        self.weights = weights
        self.sha256 = sha256
        self.backend = backend

    @property
    def net(self):
        """The torch module (torch back end) or the ONNX runner."""
        return self.runner

    @classmethod
    def load(cls, path: str | Path | None = None, *, verify: bool = True,
             threads: int | None = None, backend: str = "auto") -> BeadNet:
        """Load weights after checking their sha256 against the model card.

        Parameters
        ----------
        path : str or Path, optional
            Weights file; its model card is the same path with suffix ``.md`` and must hold a
            ``sha256: <hex>`` line. Default: the shipped ``beadnet.pt``.
        verify : bool
            Check the sha256 (default True).
        threads : int, optional
            Threads used by prediction.
        backend : {"auto", "onnx", "torch"}
            ``onnx``: ONNX Runtime on ``<stem>.onnx`` beside the weights (checked against its
            own card line and against the ``.pt`` it was exported from); ``torch``: the
            ``.pt`` with torch; ``auto``: onnx when that file and onnxruntime exist.

        Raises
        ------
        scopeflow.models.weights.WeightsError
            Missing weights or card, no sha256 line, mismatch (corrupted or replaced file),
            a file torch cannot load with ``weights_only=True``, or an ONNX file exported
            from other weights.
        """
        path = Path(path) if path is not None else default_weights()
        onnx_file = path.with_suffix(".onnx")
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be auto, onnx or torch, got {backend!r}")
        if backend == "auto":
            backend = "torch"
            if onnx_file.is_file() and path.with_suffix(".md").is_file() and card_sha256(
                    path.with_suffix(".md"), onnx_file.name):
                try:
                    import onnxruntime  # noqa: F401

                    backend = "onnx"
                except ImportError:  # pragma: no cover - onnxruntime is a dependency
                    pass
        if backend == "onnx":
            from scopeflow.models.runtime import OnnxRunner

            if not path.is_file():
                raise WeightsError(f"weights file not found: {path}")
            digest = verify_sha256(path) if verify else card_sha256(path.with_suffix(".md"))
            runner = OnnxRunner(onnx_file, path.with_suffix(".md"), digest, threads=threads)
            return cls(runner, threads=threads, weights=str(path), sha256=digest, backend="onnx")
        from scopeflow.models.weights import load_network

        def make(meta):
            if meta.get("arch") == "m2unet":
                from scopeflow.models.m2unet import M2UNet

                return M2UNet(1, 1)
            from scopeflow.models.beadnet_net import BeadUNet

            return BeadUNet(tuple(meta.get("channels", (8, 16, 32))))

        net, _, digest = load_network(path, make, verify=verify)
        return cls(net, threads=threads, weights=str(path), sha256=digest, backend="torch")

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (y, x) of a normalised float32 frame (padded to a multiple of 16)."""
        ny, nx = x.shape
        py, px = (-ny) % 16, (-nx) % 16
        xp = np.pad(x, ((0, py), (0, px)), mode="reflect") if (py or px) else x
        batch = np.ascontiguousarray(xp[None, None], dtype=np.float32)
        if self.backend == "onnx":
            out = self.runner(batch)
        else:
            import torch

            old = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(int(self.threads))
            try:
                with torch.inference_mode():
                    out = self.runner(torch.from_numpy(batch)).numpy()
            finally:
                if self.threads:
                    torch.set_num_threads(old)
        return out[0, 0, :ny, :nx]

    def predict(self, image: np.ndarray, scale: int = 1) -> np.ndarray:
        """Bead-centre probability map, float32 in [0, 1], of a raw frame.

        Parameters
        ----------
        image : ndarray (y, x)
            Raw frame.
        scale : int
            Reduction factor (:func:`scale_for_diameter`); the map has the reduced shape
            (``ceil(ny / scale), ceil(nx / scale)``).
        """
        x = normalize_frame(downsample(image, scale))
        z = self._logits(x)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Probability map at full resolution (no reduction): ``predict(image, 1)``."""
        return self.predict(image, 1)

    def candidates(self, image: np.ndarray, diameter_px: float | None,
                   threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """One candidate per bead: maxima of the map at the bead's scale, in full-res pixels.

        Parameters
        ----------
        image : ndarray (y, x)
            Raw frame.
        diameter_px : float or None
            Approximate bead diameter (px; the largest of the movie's bead classes); sets
            the reduction factor and the maxima's minimum separation (0.4 diameters).
        threshold : float
            Lowest probability of a candidate.

        Returns
        -------
        yx : ndarray (n, 2) int64
            Candidate pixels (y, x) at full resolution (the centre of the reduced pixel).
        prob : ndarray (n,) float32
            Their probabilities.
        """
        s = scale_for_diameter(diameter_px)
        prob = self.predict(image, s)
        d_net = (float(diameter_px) / s) if diameter_px else 4.0
        yx = _local_maxima(prob, threshold, max(1, int(round(0.4 * d_net))))
        p = prob[yx[:, 0], yx[:, 1]] if len(yx) else np.zeros(0, np.float32)
        full = np.round(yx * s + (s - 1) / 2.0).astype(np.int64)
        ny, nx = np.shape(image)
        full[:, 0] = np.clip(full[:, 0], 0, ny - 1)
        full[:, 1] = np.clip(full[:, 1], 0, nx - 1)
        return full, p.astype(np.float32)

    def __repr__(self) -> str:
        return (f"BeadNet(weights={self.weights!r}, backend={self.backend!r}, "
                f"sha256={self.sha256[:12] if self.sha256 else None})")
