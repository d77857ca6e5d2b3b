"""Galley model."""
