"""KServe's InferenceService CRD for tests, with KServe's own schema.

There is no KServe controller here, and its published CRD is not shipped in any package. Its
Python SDK is: every ``V1beta1...`` model lists its fields and their types (``openapi_types``,
``attribute_map``), and the Kubernetes client holds the core types they use. This module turns
those into a structural OpenAPI schema, so the API server prunes and refuses what KServe's own
CRD would (a stand-in that accepts anything would hide a field KServe does not have). Types the
SDK names but does not define are kept open (``x-kubernetes-preserve-unknown-fields``).
"""

from __future__ import annotations

import re
from typing import Any

PRIMITIVES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"}, "str": {"type": "string"}, "bool": {"type": "boolean"},
    "float": {"type": "number"}, "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string"},
}
OPEN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _schema(type_name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    import kserve.models as kserve_models
    import kubernetes.client.models as core_models

    if type_name in PRIMITIVES:
        return dict(PRIMITIVES[type_name])
    if type_name == "object":  # IntOrString, RawExtension and the like: any value
        return {"x-kubernetes-preserve-unknown-fields": True}
    listed = re.fullmatch(r"(?:list|List)\[(.+)\]", type_name)
    if listed:
        return {"type": "array", "items": _schema(listed.group(1), seen)}
    mapped = re.fullmatch(r"(?:dict\((\w+), (.+)\)|Dict\[(\w+), (.+)\])", type_name)
    if mapped:
        return {"type": "object", "additionalProperties": _schema(mapped.group(2) or mapped.group(4), seen)}
    model = getattr(kserve_models, type_name, None) or getattr(core_models, type_name, None)
    if model is None or type_name in seen:
        return dict(OPEN)
    properties = {model.attribute_map[field]: _schema(kind, (*seen, type_name))
                  for field, kind in model.openapi_types.items()}
    return {"type": "object", "properties": properties}


def inference_service_crd() -> dict[str, Any]:
    """``inferenceservices.serving.kserve.io`` (v1beta1) with the schema of KServe's SDK."""
    schema = _schema("V1beta1InferenceService")
    schema["properties"]["metadata"] = {"type": "object"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "inferenceservices.serving.kserve.io"},
        "spec": {"group": "serving.kserve.io", "scope": "Namespaced",
                 "names": {"kind": "InferenceService", "plural": "inferenceservices",
                           "singular": "inferenceservice", "shortNames": ["isvc"]},
                 "versions": [{"name": "v1beta1", "served": True, "storage": True,
                               "subresources": {"status": {}}, "schema": {"openAPIV3Schema": schema}}]},
    }


def default_like_the_webhook(isvc: dict[str, Any]) -> dict[str, Any]:
    """The merge patch KServe's defaulting webhook would make to a new InferenceService with a
    custom predictor container: the deployment mode annotation, container port and protocol,
    and default resource requests where none are set; the fields Galley sets are left as they are."""
    predictor = isvc["spec"]["predictor"]
    containers = []
    for container in predictor.get("containers") or []:
        filled = {**container}
        filled.setdefault("ports", [{"containerPort": 8080, "protocol": "TCP"}])
        filled["ports"] = [{"protocol": "TCP", **port} for port in filled["ports"]]
        resources = filled.setdefault("resources", {})
        resources.setdefault("requests", {"cpu": "1", "memory": "2Gi"})
        filled["terminationMessagePolicy"] = "File"
        containers.append(filled)
    return {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "spec": {"predictor": {**predictor, "containers": containers, "timeout": 60,
                                   "containerConcurrency": 0}}}
