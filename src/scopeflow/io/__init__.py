"""Readers and writers: Octopi acquisition folders, image sequences, OME-Zarr and tables."""
