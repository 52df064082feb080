"""Hydra entry point `python -m experiments.run` and its config tree."""
