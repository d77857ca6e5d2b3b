"""CustomResourceDefinitions generated from the pydantic models.

The CRDs carry the same constraints as the models (required fields, enums, bounds, patterns,
defaults, and the rule for ``metadata.name``), so the API server refuses a bad spec or name at
``kubectl apply``. The models stay the one
source of truth: a test fails when ``crds/`` differs from what this module generates.
"""

from __future__ import annotations

import copy
from typing import Any

from galley.api.meta import GROUP, VERSION
from galley.api.resources import RESOURCES, Model, OnlineService, Resource, TrainingJob

_KEEP = {
    "type", "properties", "required", "items", "enum", "default", "description", "format",
    "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "minProperties", "oneOf",
    "additionalProperties",
}


_NAME_KEYS = ("type", "minLength", "maxLength", "pattern")
"""What a CRD may say of ``metadata.name`` (the API server allows constraints on name and
generateName only, and applies them at create, v1.20 included): a name the children cannot
carry is refused at ``kubectl apply``."""


def _ready(kind_field: str = "Ready", part: str = "status") -> str:
    return f'.status.conditions[?(@.type=="{kind_field}")].{part}'


PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    TrainingJob.KIND: [
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Epoch", "type": "integer", "jsonPath": ".status.epoch"},
        {"name": "Epochs", "type": "integer", "jsonPath": ".status.epochs", "priority": 1},
        {"name": "Accuracy", "type": "number", "jsonPath": ".status.metrics.accuracy"},
        {"name": "Usage", "type": "string", "jsonPath": ".status.usage.summary"},
        {"name": "Flavor", "type": "string", "jsonPath": ".spec.resources.flavor", "priority": 1},
        {"name": "Succeeded", "type": "string", "jsonPath": _ready("Succeeded"), "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    Model.KIND: [
        {"name": "Ready", "type": "string", "jsonPath": _ready()},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Accuracy", "type": "number", "jsonPath": ".status.metrics.accuracy"},
        {"name": "URI", "type": "string", "jsonPath": ".status.uri", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    OnlineService.KIND: [
        {"name": "Ready", "type": "string", "jsonPath": _ready()},
        {"name": "Reason", "type": "string", "jsonPath": _ready(part="reason")},
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {"name": "Stop-At", "type": "date", "jsonPath": ".status.stopAt"},
        {"name": "Last-Request", "type": "date", "jsonPath": ".status.lastRequestTime"},
        {"name": "Usage", "type": "string", "jsonPath": ".status.usage.summary"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model", "priority": 1},
        {"name": "Stopped", "type": "string", "jsonPath": _ready("Stopped"), "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline ``$ref``s, collapse ``Optional`` and keep only what a structural schema allows."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        node = {**target, **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {options} in a structural schema")
        node = {**_resolve(options[0], defs), **node}
        if node.get("default", ...) is None:
            del node["default"]
    extra = node.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _resolve(value, defs)
        elif key in ("items", "oneOf"):
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    if extra is True:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in out:
        out.pop("additionalProperties", None)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _without_defaults(node: Any) -> Any:
    """Status is written by Galley alone, so its schema carries no defaults."""
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    return node


def openapi_schema(resource: type[Resource]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one resource."""
    schema = resource.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    properties = schema["properties"]
    spec = _resolve(properties["spec"], defs)
    status = _without_defaults(_resolve(properties["status"], defs))
    name = _resolve(properties["metadata"], defs)["properties"]["name"]
    metadata = {"type": "object", "properties": {"name": {key: name[key] for key in _NAME_KEYS if key in name}}}
    return {
        "type": "object",
        "description": (resource.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": metadata,
            "spec": spec,
            "status": status,
        },
    }


def custom_resource_definition(resource: type[Resource]) -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CRD of one resource."""
    names: dict[str, Any] = {
        "kind": resource.KIND,
        "listKind": f"{resource.KIND}List",
        "plural": resource.PLURAL,
        "singular": resource.KIND.lower(),
        "categories": ["galley"],
    }
    if resource.SHORT_NAMES:
        names["shortNames"] = list(resource.SHORT_NAMES)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[resource.KIND],
                    "schema": {"openAPIV3Schema": openapi_schema(resource)},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every resource."""
    return {f"{GROUP}_{r.PLURAL}.yaml": custom_resource_definition(r) for r in RESOURCES}
