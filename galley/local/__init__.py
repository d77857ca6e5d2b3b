"""Galley local."""
