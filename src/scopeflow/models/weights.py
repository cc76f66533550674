"""Weights files and model cards: the one check, the one loader and the one writer.

Every learned model of scopeflow ships as a ``torch.save``'d file (``<name>.pt``) beside
its model card (``<name>.md``, Markdown). The card carries a line ``sha256: <hex>`` with the
digest of the ``.pt`` file and, for files shipped beside the weights (ONNX exports,
reference logits), lines ``<file name> sha256: <hex>``. Nothing is loaded before its digest
matches the card: a corrupted or replaced file is refused with a one-line
:class:`WeightsError` naming the file.

Weights are read with ``torch.load(weights_only=True)`` (no code runs from the file): a dict
``{"state_dict": ..., "meta": {...}}`` or, for older files, a bare state dict. torch is
imported only by the functions that need it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from scopeflow.errors import ScopeflowError
from scopeflow.provenance import file_sha256

__all__ = [
    "MODELS_DIR",
    "WeightsError",
    "card_sha256",
    "load_checkpoint",
    "load_network",
    "cached_network",
    "save_weights",
    "verify_sha256",
    "write_card_sha256",
]

#: Folder of the shipped weights and their model cards (``scopeflow/models``).
MODELS_DIR = Path(__file__).resolve().parent

_SHA_RE = re.compile(r"^\s*[-*]?\s*`?sha256`?\s*:\s*`?([0-9a-fA-F]{64})`?\s*$", re.MULTILINE)
_CACHE_SIZE = 8


class WeightsError(ScopeflowError):
    """A weights file is missing, corrupted or does not match its model card."""


def card_sha256(card: str | Path, name: str | None = None) -> str | None:
    """Return a sha256 recorded in a model card, or None if it has none.

    Parameters
    ----------
    card : str or Path
        Markdown model card.
    name : str, optional
        A file name: the value of a ``<name> sha256: <hex>`` line (names may be in
        backticks), for files shipped beside the weights (ONNX exports). None: the
        first line that is only ``sha256: <hex>`` (the ``.pt`` weights).
    """
    text = Path(card).read_text(encoding="utf-8")
    if name is None:
        m = _SHA_RE.search(text)
    else:
        pat = rf"`?{re.escape(name)}`?\s+sha256\s*:\s*`?([0-9a-fA-F]{{64}})`?"
        m = re.search(pat, text)
    return m.group(1).lower() if m else None


def write_card_sha256(weights: str | Path, sha256: str, new_card: str, *, overwrite: bool = False) -> Path:
    """Record a weights file's sha256 in its model card (``weights`` with suffix ``.md``).

    Parameters
    ----------
    weights : str or Path
        The ``.pt`` file.
    sha256 : str
        Its digest.
    new_card : str
        Markdown of a card made from scratch: used when there is no card yet (a ``# <stem>``
        title is put above it) or, with ``overwrite``, in place of the existing card (then
        ``new_card`` carries its own title).
    overwrite : bool, default False
        Rewrite the whole card as ``new_card`` and the sha256 line. Otherwise the card's
        ``sha256: <hex>`` line is replaced, or appended when it has none.

    Returns
    -------
    Path
        The card.
    """
    weights = Path(weights)
    card = weights.with_suffix(".md")
    line = f"sha256: {sha256}"
    if overwrite:
        card.write_text(new_card.rstrip("\n") + "\n\n" + line + "\n", encoding="utf-8")
    elif card.is_file():
        text = card.read_text(encoding="utf-8")
        # only within the line: ``\s`` would also take the blank lines around it
        new, n = re.subn(r"(?m)^[ \t]*sha256:[ \t]*[0-9a-fA-F]*[ \t]*$", line, text)
        card.write_text(new if n else text.rstrip("\n") + "\n\n" + line + "\n", encoding="utf-8")
    else:
        card.write_text(f"# {weights.stem}\n\n{new_card}\n\n{line}\n", encoding="utf-8")
    return card


def verify_sha256(path: str | Path, card: str | Path | None = None, what: str = "weights file") -> str:
    """Check a model file's sha256 against its model card; return the digest.

    Parameters
    ----------
    path : str or Path
        The file (``.pt`` weights, or a file shipped beside them such as an ONNX export).
    card : str or Path, optional
        The model card; default ``path.with_suffix(".md")``, whose ``sha256: <hex>`` line
        is the weights' digest. With an explicit card, the ``<file name> sha256: <hex>``
        line of ``path``'s name is used (see :func:`card_sha256`).
    what : str
        How the one-line error names the file.

    Raises
    ------
    WeightsError
        Missing file or card, no sha256 line, or a digest mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} not found: {path}")
    name = None if card is None else path.name
    card = Path(card) if card is not None else path.with_suffix(".md")
    if not card.is_file():
        raise WeightsError(f"no model card {card} for {what} {path} (needs a 'sha256: <hex>' line)")
    expected = card_sha256(card, name)
    if expected is None:
        line = f"'{name} sha256: <hex>'" if name else "'sha256: <hex>'"
        raise WeightsError(f"model card {card} has no {line} line for {what} {path}")
    got = file_sha256(path)
    if got != expected:
        raise WeightsError(
            f"sha256 mismatch for {what} {path}: got {got}, model card {card.name} "
            f"says {expected} (corrupted or replaced file)"
        )
    return got


def load_checkpoint(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read a weights file after checking its sha256 against the model card.

    Parameters
    ----------
    path : str or Path
        ``.pt`` file holding ``{"state_dict": ..., "meta": {...}}`` or a bare state dict.
    verify : bool, default True
        Check the digest against the ``sha256:`` line of ``path.with_suffix(".md")``.

    Returns
    -------
    dict
        ``{"state_dict": dict, "meta": dict ({} for a bare state dict), "sha256": str}``
        (the digest, checked when ``verify``).

    Raises
    ------
    WeightsError
        One line naming the file: missing file or card, no sha256 line, digest mismatch,
        a file ``torch.load(weights_only=True)`` cannot read, or no state dict in it.
    """
    import torch

    path = Path(path)
    digest = verify_sha256(path) if verify else None
    if digest is None:
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        digest = file_sha256(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WeightsError(f"cannot read weights file {path}: {exc}".splitlines()[0]) from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        sd, meta = obj["state_dict"], dict(obj.get("meta", {}))
    elif isinstance(obj, dict):
        sd, meta = obj, {}
    else:
        raise WeightsError(f"weights file {path} does not hold a state dict")
    return {"state_dict": sd, "meta": meta, "sha256": digest}


def load_network(
    path: str | Path,
    make_net: Callable[[dict], Any],
    *,
    kind: str | None = None,
    verify: bool = True,
) -> tuple[Any, dict, str]:
    """Load a checked weights file into the network ``make_net(meta)`` builds.

    Parameters
    ----------
    path : str or Path
        Weights file (see :func:`load_checkpoint`).
    make_net : callable
        ``make_net(meta) -> torch.nn.Module`` with the architecture the metadata describe.
    kind : str, optional
        Required ``meta["kind"]`` (``"rbc_quality"``, ``"defocus"``, ``"parasites"``).
    verify : bool, default True
        Check the sha256 against the model card.

    Returns
    -------
    (torch.nn.Module, dict, str)
        The network in eval mode on the CPU, its metadata and the file's sha256.

    Raises
    ------
    WeightsError
        As :func:`load_checkpoint`, a file of another kind, or a state dict that does not
        fit the network.
    """
    loaded = load_checkpoint(path, verify=verify)
    meta = loaded["meta"]
    if kind is not None and meta.get("kind") != kind:
        raise WeightsError(f"weights file {path} is not a {kind} model (meta kind {meta.get('kind')!r})")
    net = make_net(meta)
    try:
        net.load_state_dict(loaded["state_dict"])
    except RuntimeError as exc:
        msg = f"weights file {path} does not fit {type(net).__name__}: {exc}".splitlines()[0]
        raise WeightsError(msg) from exc
    return net.eval(), meta, loaded["sha256"]


_NETWORKS: OrderedDict[tuple, tuple[Any, dict]] = OrderedDict()


def cached_network(path: str | Path, kind: str, make_net: Callable[[dict], Any]) -> tuple[Any, dict]:
    """:func:`load_network` once per file version: ``(network, meta)``, kept for reuse.

    The cache key is the resolved path, its modification time and size, and ``kind``, so a
    replaced file is checked and loaded again. The most recent few networks are kept.

    Raises
    ------
    WeightsError
        See :func:`load_network`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, kind)
    if key in _NETWORKS:
        _NETWORKS.move_to_end(key)
        return _NETWORKS[key]
    net, meta, _ = load_network(path, make_net, kind=kind)
    _NETWORKS[key] = (net, meta)
    while len(_NETWORKS) > _CACHE_SIZE:
        _NETWORKS.popitem(last=False)
    return net, meta


def save_weights(
    net: Any,
    meta: dict | None,
    out: str | Path,
    card: str = "Trained by scopeflow (see the weights' metadata).",
    *,
    overwrite_card: bool = False,
) -> str:
    """Save a network's weights and record their sha256 in the model card; return it.

    Parameters
    ----------
    net : torch.nn.Module or dict
        The network (its ``state_dict`` is saved, detached copies) or a state dict.
    meta : dict or None
        Metadata saved with it (``{"state_dict", "meta"}``); None saves the bare state dict.
    out : str or Path
        Output ``.pt`` (its folder is created).
    card : str
        Card text for :func:`write_card_sha256` (used when there is no card yet, or with
        ``overwrite_card``).
    overwrite_card : bool, default False
        Rewrite the whole card as ``card``.

    Returns
    -------
    str
        sha256 of the file written.
    """
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = net.state_dict() if hasattr(net, "state_dict") else net
    sd = {k: v.detach().clone() for k, v in sd.items()}
    torch.save(sd if meta is None else {"state_dict": sd, "meta": meta}, out)
    sha = file_sha256(out)
    write_card_sha256(out, sha, card, overwrite=overwrite_card)
    return sha
