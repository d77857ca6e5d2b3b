"""The lifecycle as pure decisions, shared by the Kubernetes operator and the embedded backend."""
