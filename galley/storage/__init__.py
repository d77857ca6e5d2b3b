"""Galley storage."""
