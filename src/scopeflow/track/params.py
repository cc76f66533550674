"""Parameter objects of the bead localiser and linker, with one default each.

:class:`LocateParams` holds the options of :func:`scopeflow.track.localize.locate_stack` and
:class:`LinkParams` those of :func:`scopeflow.track.analysis.track_pipeline`. A field that
is a ``track.*`` config key has the key's name and the default that
``workflow/schemas/config.schema.yaml`` states (a test keeps the two equal); the command
line spells it the same (``--search-range-px`` for ``search_range_px``) and takes its
default from here. Nothing else writes these defaults.

Both are built from the config's ``track:`` mapping with ``from_config`` and changed with
``with_changes(**fields)``, which names an unknown field in a one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import numpy as np

__all__ = ["LinkParams", "LocateParams"]


class _Params:
    """Shared constructors of the parameter objects."""

    #: fields that are ``track.*`` config keys
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, track: Mapping[str, Any] | None = None, **changes):
        """Parameters from the config's ``track:`` mapping (its other keys are ignored).

        Absent keys take the defaults; ``changes`` override fields by name.
        """
        given = {k: v for k, v in dict(track or {}).items() if k in cls.CONFIG_KEYS}
        return cls().with_changes(**given, **changes)

    def with_changes(self, **changes):
        """A copy with the named fields changed.

        Raises
        ------
        TypeError
            A name that is not a field (one line listing the fields).
        """
        names = [f.name for f in fields(self)]
        unknown = [k for k in changes if k not in names]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option {unknown[0]!r}; "
                            f"options: {', '.join(names)}")
        return replace(self, **changes)

    def record(self) -> dict:
        """The fields as a plain dict (arrays and bead classes left out), for provenance."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("template", "classes")}


@dataclass(frozen=True)
class LocateParams(_Params):
    """Options of the bead localiser (:func:`scopeflow.track.localize.locate_stack`).

    Parameters
    ----------
    profile : {"auto", "gaussian", "template", "ring"}
        Bead model (config ``track.profile``). "auto": polarity, size(s) and radial profile
        estimated from the data (:mod:`scopeflow.track.appearance`); with a network model
        or a given ``template`` it means "gaussian". "gaussian": pixel-integrated Gaussian,
        σ estimated from the data unless ``sigma_px`` is given. "template": template
        estimated from the data. "ring": template estimation started from the brightfield
        ring model.
    diameter_px : float, optional
        Approximate bead diameter (px) as trackpy's ``diameter`` ("auto" only): sizes are
        searched between d/8 and d/2 (LoG σ) and the suppression radius is d/2. None:
        estimated from the data.
    minmass : float, optional
        "auto": the features are those ``trackpy.locate(diameter, minmass=minmass)``
        selects (:func:`scopeflow.track.mass.bandpass_features`: band-pass maxima at least
        ``diameter + 1`` apart, not within ``diameter // 2`` of an edge, trackpy ``mass``
        above ``minmass``; the ``mass`` column, present only then), each placed by the bead
        fit where its amplitude SNR reaches :data:`scopeflow.track.appearance.FIT_SNR`, else
        at its band-pass centroid. None: scopeflow's own detection (SNR threshold, one per
        bead, profile check).
    sigma_px : float, optional
        Bead σ (px). None: estimated by a pilot pass (starting at 1.5 px).
    snr_threshold : float
        Matched-filter detection threshold (response / robust noise).
    prob_threshold : float
        Network detection threshold (probability).
    min_snr : float
        Drop localisations whose fitted amplitude is below this many standard errors
        (Fisher information, χ²-scaled).
    match_factor : float
        "auto": drop candidates whose correlation with the fitted bead is below this
        fraction of its expected value at their SNR (dirt, smudges); 0 disables.
    classes : list of dict, optional
        "auto": use these bead classes (``attrs["classes"]`` of an earlier call) instead of
        estimating them, e.g. to hold a movie's bead model fixed across blocks.
    radius_px : int, optional
        Crop/template half-size (px). Default ``ceil(3.5 σ)`` (Gaussian) or ``ceil(4.5 σ)``.
    template : ndarray (2r+1, 2r+1), optional
        Use this template (implies ``profile="template"`` unless profile is "gaussian").
    invert : bool, optional
        Matched filter only: True for dark beads on a bright background, False for bright
        beads; None = decide from the data (fits use signed amplitudes, so the raw data are
        never inverted).
    min_distance : int, optional
        Non-maximum-suppression radius (px); default ``max(2, round(1.5 σ))``.
    upsample : int
        Upsampling factor of the cross-correlation DFT.
    refine : {"mle", "xcorr"}
        "mle": Poisson maximum-likelihood refinement started at the cross-correlation peak
        (reaches the CRLB); "xcorr": cross-correlation peak only.
    gain, offset : float
        Camera gain (ADU/photon) and offset (ADU); photons = (ADU - offset) / gain.
    read_noise : float
        Read noise (photons rms) in the noise model.
    n_iter : int
        Fisher-scoring iterations.
    ep_scale : {"chi2", "none"}
        Scale the CRLB-based ``ep_px`` by the fit's reduced chi-square.
    pilot_frames : int
        Frames used to estimate σ / the template (at most).
    pilot_spots : int
        Beads enough for the pilot σ estimate.
    neighbours : bool
        Second pass for crowded beads: refit each bead with its fitted neighbours' models
        added to the expected photons (instead of masking the pixels nearer a neighbour).

    Raises
    ------
    ValueError
        An unknown ``profile`` or ``refine``, or ``diameter_px`` not above 1 px.
    """

    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "profile", "diameter_px", "minmass", "sigma_px", "snr_threshold", "prob_threshold",
        "min_snr",
    )

    profile: str = "auto"
    diameter_px: float | None = None
    minmass: float | None = None
    sigma_px: float | None = None
    snr_threshold: float = 5.0
    prob_threshold: float = 0.5
    min_snr: float = 4.0
    match_factor: float = 0.6
    classes: list | None = field(default=None, compare=False)
    radius_px: int | None = None
    template: np.ndarray | None = field(default=None, compare=False)
    invert: bool | None = None
    min_distance: int | None = None
    upsample: int = 10
    refine: str = "mle"
    gain: float = 1.0
    offset: float = 0.0
    read_noise: float = 0.0
    n_iter: int = 5
    ep_scale: str = "chi2"
    pilot_frames: int = 50
    pilot_spots: int = 400
    neighbours: bool = True

    def __post_init__(self) -> None:
        if self.profile not in ("auto", "gaussian", "template", "ring"):
            raise ValueError(f"profile must be 'auto', 'gaussian', 'template' or 'ring', got "
                             f"{self.profile!r}")
        if self.diameter_px is not None and not (float(self.diameter_px) > 1):
            raise ValueError(f"diameter_px must be a number of pixels > 1, got "
                             f"{self.diameter_px!r}")
        if self.refine not in ("mle", "xcorr"):
            raise ValueError(f"refine must be 'mle' or 'xcorr', got {self.refine!r}")


@dataclass(frozen=True)
class LinkParams(_Params):
    """Options of linking and motion analysis (:func:`scopeflow.track.analysis.track_pipeline`).

    Parameters
    ----------
    search_range_px : float
        Largest displacement between linked frames (px; trackpy ``search_range``).
    memory : int
        Frames a bead may vanish and keep its track (trackpy ``memory``).
    adaptive_stop_px : float, optional
        Smallest search range (px) trackpy may shrink to when a linking subnetwork is too
        large (trackpy ``adaptive_stop``); None: no adaptive search.
    min_length : int or "auto"
        Keep tracks present in at least this many frames (trackpy ``filter_stubs``).
        "auto": the fitted lags + 1 (``fit_lags + 1``, at most the movie's frames), so that
        every kept track has a displacement at every fitted lag; a fixed length longer than
        that keeps only the beads that stay in focus long, the slow ones, and biases D low
        (measured on simulated beads diffusing through the depth of field,
        ``benchmarks/track_focus.py``). With ``fit_lags="auto"`` the lags are chosen on all
        tracks of at least 3 frames first.
    drift : bool
        Subtract the ensemble drift before the MSD (the MSD then undoes the variance the
        subtraction removes, see :func:`scopeflow.track.motion.ensemble_msd`).
    max_lag : int
        Largest MSD lag (frames).
    fit_lags : int or "auto"
        Lags fitted with ``MSD = 4 D τ + c`` and the power law ("auto": the number
        minimising the expected error of D for the measured localisation error and track
        lengths).
    """

    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "search_range_px", "memory", "adaptive_stop_px", "min_length", "drift", "max_lag",
        "fit_lags",
    )

    search_range_px: float = 5.0
    memory: int = 3
    adaptive_stop_px: float | None = None
    min_length: int | str = "auto"
    drift: bool = True
    max_lag: int = 100
    fit_lags: int | str = 10

    def __post_init__(self) -> None:
        ml = self.min_length
        if ml != "auto" and not (isinstance(ml, (int, np.integer)) and not isinstance(ml, bool)
                                 and ml >= 2):
            raise ValueError(f"min_length must be 'auto' or an integer number of frames >= 2, "
                             f"got {ml!r}")
