"""Galley: train and serve image classifiers on Kubernetes, or on one machine."""

__version__ = "0.1.0"
