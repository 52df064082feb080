"""Sparse4D v3 in plain PyTorch."""
