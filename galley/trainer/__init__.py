"""Galley trainer."""
