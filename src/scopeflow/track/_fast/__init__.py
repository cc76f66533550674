"""Compiled (numba) kernels of the localiser's hot loops; the numpy code is the fallback.

* :mod:`.peaks` – candidates (:func:`local_maxima`), the matched filter of a Gaussian bead
  (:func:`gauss_minus_box`), crops and their background (:func:`extract_crops`,
  :func:`border_median`).
* :mod:`.xcorr` – the upsampled DFT cross-correlation of every candidate (:func:`xcorr`).
* :mod:`.gauss` – the Poisson MLE fits of a pixel-integrated Gaussian, σ fixed or free
  (:func:`fit_gaussian_fixed`, :func:`fit_gaussian_free`).
* :mod:`.neighbours` – the neighbour pixel mask of the first fit and the neighbours' fitted
  models added in the crowded-bead refit (:func:`neighbour_keep`, :func:`neighbour_gauss`).

All kernels release the GIL (``nogil``), so frames can be localised on parallel threads.
No kernel calls BLAS (a multithreaded BLAS inside the per-frame thread pool oversubscribes
the cores).

numba is a dependency of scopeflow (it is also what makes ``trackpy.locate`` fast); when it
cannot be imported, ``HAVE_NUMBA`` is False and the localiser modules
(:mod:`scopeflow.track.peaks`, :mod:`~scopeflow.track.refine`, :mod:`~scopeflow.track.fit`)
use their vectorised numpy code, which gives the same numbers more slowly; they read
``HAVE_NUMBA`` from this package at call time. Compiled code is cached on disk
(``cache=True``), so only the first process pays the compilation (a few seconds). Set
``SCOPEFLOW_NO_NUMBA=1`` to force the numpy code.
"""

from scopeflow._numba import HAVE_NUMBA
from scopeflow.track._fast.gauss import fit_gaussian_fixed, fit_gaussian_free
from scopeflow.track._fast.neighbours import neighbour_gauss, neighbour_keep
from scopeflow.track._fast.peaks import (
    border_median,
    extract_crops,
    gauss_minus_box,
    local_maxima,
)
from scopeflow.track._fast.xcorr import xcorr

__all__ = [
    "HAVE_NUMBA", "border_median", "extract_crops", "fit_gaussian_fixed", "fit_gaussian_free",
    "gauss_minus_box", "local_maxima", "neighbour_gauss", "neighbour_keep", "xcorr",
]
