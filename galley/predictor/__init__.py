"""The predictor: a KServe model server for Galley model packages, with the cloud platform's API.

It imports ``galley.model`` (network, preprocessing, package format) and never the trainer.
"""
