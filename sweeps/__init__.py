"""Optuna sweeps over an arm's knobs."""
