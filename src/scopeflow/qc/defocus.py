"""Learned defocus estimate: a small CNN regressing |Δz| (µm) from image patches.

The network is trained only on simulated smears (:func:`scopeflow.simulate.smear.simulate_fov`
with ``defocus_um``: the thin-object field is propagated by the angular-spectrum kernel
``exp(2πi Δz (sqrt((n/λ)² − |f|²) − n/λ))`` inside the partially coherent half-disc DPC
imaging model, NA 0.4, λ = 0.525 µm, 0.333 µm/px). Every simulated field of view is rendered
in two modalities from the same left/right frames:

* **DPC**: ``0.5 + (L − R)/(L + R)`` after flatfield correction (the Octopi image), and
* **brightfield**: ``(L + R)/2`` after flatfield correction (both halves on = a round
  source), with illumination NA drawn per image (0.15–0.4) so condenser apertures vary,

so the model can be applied to either. Inputs are 64×64 patches z-scored per patch; the
output is ``log(1 + |Δz|/µm)``. :func:`defocus_score` returns the median prediction over
the most textured patches of an image, in µm (**higher = more defocused**; the sign of Δz is
not recovered).

The numbers are calibrated for the simulated optics (NA 0.4 at 0.333 µm/px, RBC monolayer).
Other objectives (depth of field ∝ λ/NA²) and other specimens change the scale: treat the
value as a monotone defocus score there, not as micrometres (see the model card
``models/defocus.md`` for the brightfield validation on real data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from scopeflow.models.quality import DefocusNet
from scopeflow.models.weights import MODELS_DIR, cached_network

__all__ = [
    "DEFAULT_WEIGHTS",
    "PATCH_PX",
    "PIXEL_SIZE_UM",
    "defocus_patch_predictions",
    "defocus_score",
    "image_patches",
    "load_defocus_model",
    "simulate_defocus_views",
    "train_defocus",
    "train_defocus_main",
    "add_arguments",
]

#: The shipped model (see its model card ``defocus.md``).
DEFAULT_WEIGHTS = MODELS_DIR / "defocus.pt"
#: Patch edge (px) and the pixel size (µm) the model was trained at.
PATCH_PX = 64
PIXEL_SIZE_UM = 0.333
_STD_FLOOR = 1e-6


def _zscore(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    return ((p - p.mean()) / max(p.std(), _STD_FLOOR)).astype(np.float32)


def image_patches(
    image: np.ndarray, patch: int = PATCH_PX, max_patches: int = 64, keep: float = 0.5
) -> np.ndarray:
    """Z-scored patches on a regular grid, keeping the most textured ones.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image (any intensity scale). Non-finite pixels are replaced by the image mean.
    patch : int
        Patch edge (px). Images smaller than a patch are padded with their mean.
    max_patches : int
        At most this many patches are kept (grid spacing grows for large images).
    keep : float
        Fraction of the grid patches kept, those with the largest raw standard deviation
        (background-only patches say little about focus).

    Returns
    -------
    numpy.ndarray
        float32 (N, 1, patch, patch), each patch z-scored (mean 0, std 1; a constant patch
        is all 0). N ≥ 1.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    fin = np.isfinite(img)
    mean = float(img[fin].mean()) if fin.any() else 0.0
    img = np.where(fin, img, mean).astype(np.float32)
    ny, nx = img.shape
    if ny < patch or nx < patch:
        pad = np.full((max(ny, patch), max(nx, patch)), mean, np.float32)
        pad[:ny, :nx] = img
        img, (ny, nx) = pad, pad.shape
    n_y, n_x = ny // patch, nx // patch
    grid = n_y * n_x
    cap = max(1, int(np.ceil(max_patches / max(keep, 1e-6))))
    if grid > cap:  # thin the grid evenly
        step = int(np.ceil(np.sqrt(grid / cap)))
        ys = np.arange(0, n_y, step)
        xs = np.arange(0, n_x, step)
    else:
        ys, xs = np.arange(n_y), np.arange(n_x)
    oy, ox = (ny - n_y * patch) // 2, (nx - n_x * patch) // 2
    pats = np.stack([
        img[oy + i * patch : oy + (i + 1) * patch, ox + j * patch : ox + (j + 1) * patch]
        for i in ys
        for j in xs
    ])
    sd = pats.reshape(len(pats), -1).std(axis=1)
    n_keep = int(min(max_patches, max(1, round(keep * len(pats)))))
    order = np.argsort(-sd, kind="stable")[:n_keep]
    return np.stack([_zscore(pats[k]) for k in order])[:, None]


def load_defocus_model(weights: str | Path | None = None) -> tuple[DefocusNet, dict]:
    """Load (and cache) the defocus network after checking its sha256 against its card.

    Parameters
    ----------
    weights : str, Path or None
        ``.pt`` file with a model card (``.md``, ``sha256:`` line) beside it; None = the
        shipped :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    (DefocusNet, dict)
        Network in eval mode and its metadata (``patch``, ``pixel_size_um``, recipe).

    Raises
    ------
    scopeflow.models.weights.WeightsError
        Missing file or card, sha256 mismatch, or not a defocus model.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    return cached_network(path, "defocus", DefocusNet.from_meta)


def _resample(image: np.ndarray, pixel_size_um: float | None, target: float) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if pixel_size_um is None or abs(pixel_size_um / target - 1.0) < 1e-3:
        return img
    zoom = float(pixel_size_um) / target
    if zoom < 1:  # anti-alias before shrinking
        img = ndi.gaussian_filter(img, sigma=0.5 / zoom * 0.7)
    return ndi.zoom(img, zoom, order=1)


def defocus_patch_predictions(
    image: np.ndarray,
    *,
    weights: str | Path | None = None,
    pixel_size_um: float | None = None,
    max_patches: int = 64,
) -> np.ndarray:
    """Predicted |Δz| (µm) of each selected patch of an image (see :func:`defocus_score`)."""
    net, meta = load_defocus_model(weights)
    img = _resample(image, pixel_size_um, float(meta["pixel_size_um"]))
    pats = image_patches(img, int(meta["patch"]), max_patches=max_patches)
    with torch.inference_mode():
        out = net(torch.from_numpy(pats)).double().numpy()
    return np.expm1(np.clip(out, 0.0, None))


def defocus_score(
    image: np.ndarray,
    *,
    weights: str | Path | None = None,
    pixel_size_um: float | None = None,
    max_patches: int = 64,
) -> float:
    """Estimated defocus |Δz| of an image in µm (higher = more defocused).

    Parameters
    ----------
    image : numpy.ndarray
        2-D DPC (Octopi ``0.5 + (L − R)/(L + R)``) or brightfield image, any intensity scale
        (patches are z-scored).
    weights : str, Path or None
        Weights (sha256-checked against the model card); None = shipped model.
    pixel_size_um : float, optional
        Pixel size of ``image`` (µm). When given, the image is resampled to the model's pixel
        size (0.333 µm/px) first; None = assume it already has it.
    max_patches : int
        At most this many 64×64 patches (the most textured half of a grid) are scored.

    Returns
    -------
    float
        Median over patches of the predicted |Δz| in µm. Calibrated on simulated Octopi optics
        (NA 0.4, 0.333 µm/px); elsewhere use it as a relative score (compare images of the
        same specimen and optics). A constant image gives a finite value.
    """
    return float(np.median(defocus_patch_predictions(
        image, weights=weights, pixel_size_um=pixel_size_um, max_patches=max_patches)))


# ----------------------------------------------------------------------------- training data
def simulate_defocus_views(
    seed: int,
    defocus_um: float,
    shape: tuple[int, int] = (256, 256),
    na_illum: float | None = None,
    density: float = 0.35,
) -> dict[str, np.ndarray]:
    """One simulated smear at defocus Δz rendered as DPC and as brightfield.

    Parameters
    ----------
    seed : int
        Simulation seed.
    defocus_um : float
        Δz (µm).
    shape : (int, int)
        Field of view (px, 0.333 µm/px).
    na_illum : float, optional
        Illumination NA (default: the objective NA 0.4).
    density : float
        Cell area fraction.

    Returns
    -------
    dict
        ``dpc`` (flatfield-corrected ``0.5 + (L − R)/(L + R)``) and ``brightfield``
        (flatfield-corrected ``(L + R)/2``), float32 (y, x).
    """
    from scopeflow.simulate.smear import simulate_fov

    sim = simulate_fov(shape=shape, seed=int(seed), defocus_um=float(defocus_um),
                       na_illum=na_illum, density=density)
    left = sim["left"].astype(np.float32) / 255.0 / sim["ff_left"]
    right = sim["right"].astype(np.float32) / 255.0 / sim["ff_right"]
    with np.errstate(divide="ignore", invalid="ignore"):
        dpc = np.nan_to_num(0.5 + (left - right) / (left + right), nan=0.5)
    return {"dpc": np.clip(dpc, 0, 1).astype(np.float32),
            "brightfield": (0.5 * (left + right)).astype(np.float32)}


def _training_set(n_fov: int, seed: int, verbose: bool = True) -> dict[str, np.ndarray]:
    """Patches of ``n_fov`` simulated smears at random Δz in [−30, 30] µm, both modalities."""
    rng = np.random.default_rng(seed)
    xs, ys, mods = [], [], []
    t0 = time.perf_counter()
    for i in range(n_fov):
        dz = rng.uniform(-1.0, 1.0) if rng.random() < 0.2 else rng.uniform(-30.0, 30.0)
        na_illum = 0.4 if rng.random() < 0.5 else rng.uniform(0.15, 0.4)
        views = simulate_defocus_views(int(rng.integers(2**31)), dz, na_illum=na_illum,
                                       density=rng.uniform(0.1, 0.5))
        for m, img in views.items():
            p = image_patches(img, PATCH_PX, max_patches=8)
            xs.append(p)
            ys.append(np.full(len(p), abs(dz), np.float32))
            mods += [m] * len(p)
        if verbose and (i + 1) % 100 == 0:
            print(f"  simulated {i + 1}/{n_fov} fields ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return {"x": np.concatenate(xs).astype(np.float16), "dz": np.concatenate(ys),
            "modality": np.array(mods)}


def train_defocus(
    data: dict,
    out: str | Path,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 1,
    widths: tuple[int, ...] = (16, 32, 48, 64),
    command: str = "",
    verbose: bool = True,
) -> dict:
    """Train :class:`~scopeflow.models.quality.DefocusNet` (MSE on ``log1p(|Δz|)``) and save ``{"state_dict", "meta"}``.

    Augmentation: y-flips, x-flips (with the sign of DPC patches inverted; brightfield is
    symmetric) and 90° rotations of brightfield patches only (DPC has a direction). AdamW
    (weight decay 1e-4), one-cycle learning rate (:mod:`scopeflow.models.training`). The
    ``sha256:`` line of the model card beside ``out`` is updated.
    """
    from scopeflow.models.training import make_optimizer, minibatches, run_steps
    from scopeflow.models.weights import save_weights

    torch.manual_seed(seed)
    torch.set_num_threads(int(threads))
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.asarray(data["x"], np.float32))
    t = torch.from_numpy(np.log1p(np.asarray(data["dz"], np.float32)))
    is_dpc = torch.from_numpy(np.asarray(data["modality"]) == "dpc")
    n = len(t)
    net = DefocusNet(tuple(widths))
    opt, sched = make_optimizer(net.parameters(), lr, steps=epochs * -(-n // batch_size))
    history = []
    t0 = time.perf_counter()

    def loss_fn(net: DefocusNet, idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx].clone()
        m = len(idx)
        fy = torch.rand(m, generator=gen) < 0.5
        xb[fy] = xb[fy].flip(2)
        fx = torch.rand(m, generator=gen) < 0.5
        xb[fx] = xb[fx].flip(3)
        neg = fx & is_dpc[idx]
        xb[neg] = -xb[neg]
        rot = (torch.rand(m, generator=gen) < 0.5) & ~is_dpc[idx]
        xb[rot] = xb[rot].transpose(2, 3)
        return torch.nn.functional.mse_loss(net(xb), t[idx])

    for ep in range(epochs):
        idx_batches = list(minibatches(torch.randperm(n, generator=gen), batch_size))
        losses = run_steps(net, opt, sched, idx_batches, loss_fn)
        tot = sum(loss * len(idx) for loss, idx in zip(losses, idx_batches, strict=True))
        history.append({"epoch": ep + 1, "loss": tot / n, "seconds": time.perf_counter() - t0})
        if verbose:
            print(f"  epoch {ep + 1}/{epochs}: mse(log1p) {tot / n:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    net.eval()
    meta = {
        "kind": "defocus", "patch": PATCH_PX, "pixel_size_um": PIXEL_SIZE_UM,
        "widths": [int(w) for w in widths],
        "input": "1 channel, 64x64 patch z-scored per patch (DPC or brightfield)",
        "output": "log1p(|dz| / um)",
        "optics": {"na": 0.4, "wavelength_um": 0.525, "na_illum": "0.4 (p=0.5) or U(0.15, 0.4)"},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "n": n,
                  "command": command, "history": history},
    }
    return {"out": str(out), "sha256": save_weights(net, meta, out), "history": history}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow train-defocus`` (registered by :func:`scopeflow.cli.build_parser`)."""
    p.add_argument("--out", required=True,
                   help="output weights (.pt); its .md card gets the sha256")
    p.add_argument("--n-fov", type=int, default=600, help="simulated 256^2 fields (default 600)")
    p.add_argument("--cache", default=None, help="npz cache of the patches (reused if present)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)


def train_defocus_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow train-defocus``: simulate training patches and train the defocus CNN.
    ``args``: the parsed arguments (:func:`add_arguments`); ``argv``: as given (recorded)."""
    torch.set_num_threads(int(args.threads))
    from scopeflow.models.training import cached_arrays

    def simulate() -> dict[str, np.ndarray]:
        print(f"simulating {args.n_fov} fields ...", flush=True)
        return _training_set(args.n_fov, args.seed)

    data = cached_arrays(args.cache, ("x", "dz", "modality"), simulate)
    print(f"training patches: {len(data['dz'])}")
    cmd = "scopeflow train-defocus " + " ".join(argv)
    res = train_defocus(data, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, threads=args.threads, command=cmd)
    print(f"wrote {res['out']} (sha256 {res['sha256']})")
    return 0
