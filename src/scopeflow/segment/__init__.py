"""Segmentation: predictors (classical, U-Net) and the chunked machinery that runs them."""
