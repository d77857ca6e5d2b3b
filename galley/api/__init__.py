"""Galley api."""
