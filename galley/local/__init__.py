"""The embedded backend: the same resources and lifecycle on one machine, with processes for pods.

State lives in a folder (``./.galley`` or ``$GALLEY_HOME``): each resource's manifest (the
user's) and its status (Galley's) in separate files, so ``galley stop`` and a running supervisor
never overwrite each other.
"""
