"""Contractive diffusion probabilistic models (CDPM) for diffsde: filled in below."""
