"""The console's forms: what a user types, turned into manifests and checked with the API's models.

A form is checked by :func:`galley.manifests.parse_resource`, the same check ``galley validate``
and ``galley run`` make, and each problem is shown next to the field it names. Nothing is
created unless every resource of the form is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import yaml

from galley.api.flavors import FlavorCatalogue
from galley.api.hyperparameters import HYPERPARAMETERS, Hyperparameter
from galley.api.meta import API_VERSION
from galley.api.resources import AlgorithmName, Resource
from galley.manifests import parse_resource

TRAINING_FIELDS = {
    "name": "metadata.name",
    "algorithm": "spec.algorithm.name",
    "dataset": "spec.dataset.uri",
    "learning_rate_strategy": "spec.hyperparameters.learning_rate_strategy",
    "flavor": "spec.resources.flavor",
    "nodes": "spec.resources.nodes",
    "output": "spec.output.uri",
    "secret": "spec.storage.secretRef",
    **{h.name: f"spec.hyperparameters.{h.name}" for h in HYPERPARAMETERS},
}
"""Form field -> the manifest field it fills (problems are reported by manifest field). Every
hyperparameter is a field of its own name, shown with its help from the table that checks it."""

MORE_HYPERPARAMETERS: tuple[Hyperparameter, ...] = tuple(h for h in HYPERPARAMETERS
                                                        if h.name != "learning_rate_strategy")
"""The hyperparameters under "More hyperparameters": left empty, each takes its default."""

DEPLOY_FIELDS = {
    "model_name": ("Model", "metadata.name"),
    "service_name": ("OnlineService", "metadata.name"),
    "flavor": ("OnlineService", "spec.flavor"),
    "auto_stop_after": ("OnlineService", "spec.autoStop.after"),
    "auto_stop_idle": ("OnlineService", "spec.autoStop.idle"),
}

ALGORITHMS: tuple[str, ...] = get_args(AlgorithmName)
"""The preset algorithms the form offers: those the TrainingJob schema accepts."""

TRAINING_DEFAULTS = {"algorithm": "resnet50", "learning_rate_strategy": "20:0.001", "flavor": "gpu-v100-1",
                     "nodes": "1"}

DEPLOY_DEFAULTS = {"flavor": "cpu-1c-4g", "auto_stop_after": "1h", "auto_stop_idle": ""}
""""Deploy this": a 1-core CPU service that stops by itself after an hour (names follow the job's)."""


@dataclass
class Checked:
    """A form's manifests, and its problems by form field (``""`` for those no field explains)."""

    manifests: list[dict[str, Any]]
    resources: list[Resource] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def yaml(self) -> str:
        return "---\n".join(yaml.safe_dump(m, sort_keys=False, allow_unicode=True) for m in self.manifests)

    @property
    def valid(self) -> bool:
        return not self.errors


def _number(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def training_manifest(form: dict[str, str]) -> dict[str, Any]:
    """The TrainingJob a filled-in form describes; empty optional fields are left out."""
    hyperparameters = {"learning_rate_strategy": form.get("learning_rate_strategy", "").strip()}
    hyperparameters |= {h.name: form[h.name].strip() for h in MORE_HYPERPARAMETERS if form.get(h.name, "").strip()}
    spec: dict[str, Any] = {
        "algorithm": {"name": form.get("algorithm", "")},
        "dataset": {"uri": form.get("dataset", "").strip()},
        "hyperparameters": hyperparameters,
        "output": {"uri": form.get("output", "").strip()},
        "resources": {"flavor": form.get("flavor", ""), "nodes": _number(form.get("nodes", "1"))},
    }
    if form.get("secret", "").strip():
        spec["storage"] = {"secretRef": form["secret"].strip()}
    return {"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": {"name": form.get("name", "").strip()},
            "spec": spec}


def deploy_manifests(job_name: str, form: dict[str, str]) -> list[dict[str, Any]]:
    """A Model of the job's package and an OnlineService for it ("deploy this")."""
    model_name = form.get("model_name", "").strip()
    auto_stop = {k: form[f"auto_stop_{k}"].strip() for k in ("after", "idle") if form.get(f"auto_stop_{k}", "").strip()}
    service: dict[str, Any] = {"model": model_name, "flavor": form.get("flavor", "")}
    if auto_stop:
        service["autoStop"] = auto_stop
    return [
        {"apiVersion": API_VERSION, "kind": "Model", "metadata": {"name": model_name},
         "spec": {"source": {"trainingJob": job_name}}},
        {"apiVersion": API_VERSION, "kind": "OnlineService",
         "metadata": {"name": form.get("service_name", "").strip()}, "spec": service},
    ]


def check(manifests: list[dict[str, Any]], catalogue: FlavorCatalogue | None,
          fields: dict[str, tuple[str, str]]) -> Checked:
    """Validate every manifest; each problem goes to the form field whose (kind, manifest field)
    it names, or to ``""``."""
    by_field = {where: name for name, where in fields.items()}
    checked = Checked(manifests)
    for manifest in manifests:
        resource, problems = parse_resource(manifest, "form", catalogue)
        if resource is not None:
            checked.resources.append(resource)
        for problem in problems:
            name = by_field.get((manifest["kind"], problem.field), "")
            text = problem.message if name else f"{manifest['kind']} {problem.field}: {problem.message}"
            checked.errors.setdefault(name, []).append(text)
    return checked


def check_training(form: dict[str, str], catalogue: FlavorCatalogue | None) -> Checked:
    return check([training_manifest(form)], catalogue, {k: ("TrainingJob", v) for k, v in TRAINING_FIELDS.items()})


def check_deploy(job_name: str, form: dict[str, str], catalogue: FlavorCatalogue | None) -> Checked:
    return check(deploy_manifests(job_name, form), catalogue, DEPLOY_FIELDS)
