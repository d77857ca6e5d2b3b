"""Galley predictor."""
