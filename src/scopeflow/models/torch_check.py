"""The trained torch network's logits on a tile, computed in a child process.

The ONNX back end is checked against torch on a real tile of the first image it
segments (:meth:`scopeflow.segment.unet.UNetPredictor.predict`). ONNX Runtime itself
needs no torch, and ``import torch`` alone costs ~2 s of one core. A
:class:`TorchReference` therefore starts, when the predictor is made, a child process
that imports torch and loads the ``.pt`` weights while the parent reads the image and
runs inference, and it never holds the parent's GIL. The child keeps the normal CPU
priority: at the lowest one it was starved during inference and finished alone after
decoding, with one core idle. The parent reads the child's logits as soon as they are
written: a child blocked on the full pipe stayed alive until the check and then spent
~0.5 s of one core in the interpreter's teardown while the parent waited; the child now
also leaves without that teardown. For a 4096² image on 2 cores it is done before
inference is half over, and the check waits for nothing.

Protocol of the child (``python -m scopeflow.models.torch_check WEIGHTS SHA256``):
it loads the weights (checking their sha256 against the model card and ``SHA256``;
``-`` skips the check),
reads one ``.npy`` array (float32, (N, 1, H, W), H and W multiples of 16) from stdin,
writes the logits (float32, (N, C, H, W)) to stdout as ``.npy`` and exits; errors are
one line on stderr and exit status 1.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np

from scopeflow.errors import ScopeflowError

__all__ = ["TorchReference"]


class TorchReference:
    """A child process that will compute the torch logits of one tile.

    Parameters
    ----------
    weights : str or Path
        The ``.pt`` weights (with their model card).
    sha256 : str or None
        Their expected sha256 (already verified by the caller; the child checks it
        again); None: not checked (weights without a model card).
    """

    def __init__(self, weights: str | Path, sha256: str | None) -> None:
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: the child never blocks on it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scopeflow.models.torch_check", str(weights), sha256 or "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self._writer: threading.Thread | None = None
        self._output: list[bytes] = []
        # read the logits as they come: a child blocked on a full pipe could not exit (the
        # thread holds the pipe, not self, so dropping self still stops the child)
        self._reader = threading.Thread(target=_read_all, args=(self.proc.stdout, self._output), daemon=True)
        self._reader.start()
        self._finalizer = weakref.finalize(self, _stop, self.proc)

    def close(self) -> None:
        """Stop the child if it still runs (its result is not needed)."""
        self._finalizer()

    def submit(self, tile: np.ndarray) -> None:
        """Send the tile (float32, (N, 1, H, W)); returns at once."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(tile, dtype=np.float32))

        def write(data=buf.getvalue(), pipe=self.proc.stdin):
            try:
                pipe.write(data)
                pipe.close()
            except OSError:  # the child died: result() reports why
                pass

        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()

    def result(self) -> np.ndarray:
        """Wait for the child and return its logits (float32, (N, C, H, W)).

        Raises
        ------
        ScopeflowError
            The child failed; the message is its last line of stderr.
        """
        if self._writer is None:
            raise RuntimeError("TorchReference.result called before submit")
        self._writer.join()
        self._reader.join()
        data = self._output[0] if self._output else b""
        code = self.proc.wait()
        if code != 0 or not data:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            raise ScopeflowError(
                "torch reference for the ONNX check failed: " + (lines[-1] if lines else f"exit status {code}")
            )
        return np.load(io.BytesIO(data))


def _read_all(pipe, into: list[bytes]) -> None:
    into.append(pipe.read())
    pipe.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Child process entry point (see the module docstring)."""
    weights, sha256 = argv if argv is not None else sys.argv[1:]
    try:
        import torch

        from scopeflow.models.m2unet import network_from_weights
        from scopeflow.models.m2unet_files import load_weights

        torch.set_num_threads(1)
        loaded = load_weights(weights, verify=sha256 != "-")
        if sha256 != "-" and loaded["sha256"] != sha256:
            raise ScopeflowError(f"weights file {weights} changed while loading (sha256 {loaded['sha256']})")
        net = network_from_weights(loaded)
        tile = np.load(io.BytesIO(sys.stdin.buffer.read()))
        with torch.inference_mode():
            logits = net(torch.from_numpy(tile)).numpy()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        print(f"{type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    buf = io.BytesIO()
    np.save(buf, logits)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # no interpreter teardown: with torch loaded it costs ~0.5 s of one core, while the
    # parent waits for the exit status
    os._exit(code)
