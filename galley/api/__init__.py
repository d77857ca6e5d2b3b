"""The resource API (``galley.dev/v1alpha1``): TrainingJob, Model, OnlineService as pydantic models.

Everything here is pure: parsing and validation of specs (learning-rate strategies, splits,
durations, storage URIs, names), the flavor catalogue, and the CRDs generated from the models.
"""
