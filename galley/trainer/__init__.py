"""Preset algorithms: from a labelled photo set to a model package.

Run as ``python -m galley.trainer`` in a trainer pod, or through ``galley train`` on one machine.
"""
