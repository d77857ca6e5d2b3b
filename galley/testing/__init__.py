"""Helpers that start real components for tests: the envtest API server, a moto S3 server."""
