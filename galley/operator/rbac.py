"""The operator's permissions: exactly the verbs and resources its handlers use.

The Helm chart renders its ClusterRole (or per-namespace Roles) from these rules
(``galley rbac``), and a test runs the operator under them against a real API server.
"""

from __future__ import annotations

from typing import Any

from galley.api.meta import GROUP

RULES: list[dict[str, Any]] = [
    # The three Galley resources: watched and their status written; nothing else of them is
    # changed (no finalizers, no kopf state in annotations).
    {"apiGroups": [GROUP], "resources": ["trainingjobs", "models", "onlineservices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": ["trainingjobs/status", "models/status", "onlineservices/status"],
     "verbs": ["get", "patch"]},
    # Trainer Jobs and their pods, predictor Deployments and Services: created, and watched into
    # caches (galley.operator.indexes) so that reconciles read no API.
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch", "create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch", "delete"]},
    # Ingresses of services exposed with spec.expose.ingress (removed when the field is).
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    # KServe InferenceServices, where KServe is installed; the CRD is read to find out.
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
     "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
    # Storage credentials, to read progress records and model packages with the resource's own Secret.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    # Events for phase changes; namespaces for kopf's namespace discovery.
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]


def cluster_role(name: str = "galley-operator") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "galley"}}, "rules": RULES}
