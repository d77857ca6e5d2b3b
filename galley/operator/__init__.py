"""The Kubernetes backend: kopf handlers (thin) and builders (pure manifest renderers).

Handlers read the resource and its children, ask :mod:`galley.control` what to do, and carry it
out; what a child object looks like is decided in :mod:`galley.operator.builders`.
"""
