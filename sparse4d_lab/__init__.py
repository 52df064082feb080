"""sparse4d_lab: A/B studies of how the queries of Sparse4D-style detectors are supervised."""

__version__ = "0.1.0"
