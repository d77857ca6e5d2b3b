"""Galley operator."""
