"""scopeflow: raw microscope acquisitions to per-cell and per-track tables."""

__version__ = "0.1.0"
