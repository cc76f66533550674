"""Bead tracking: detection, subpixel localisation, linking, MSD and diffusion."""
