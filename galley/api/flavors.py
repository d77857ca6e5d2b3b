"""The flavor catalogue: named machine shapes that specs refer to (``gpu-v100-1``, ``cpu-1c-4g``).

A flavor carries everything a pod needs to land on the right hardware: requests and limits,
``nvidia.com/gpu``, a node selector on the GPU-feature-discovery product label, tolerations.
Built-in defaults cover the common shapes; a YAML file (on a cluster, a ConfigMap mounted by
the Helm chart) adds flavors or replaces them by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label that NVIDIA GPU feature discovery sets to the GPU's product name."""

FLAVORS_FILE_ENV = "GALLEY_FLAVORS_FILE"
"""Environment variable naming a YAML catalogue that extends or overrides the built-ins."""


class Toleration(BaseModel):
    """A Kubernetes toleration, as a pod spec takes it."""

    model_config = ConfigDict(extra="forbid")
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


class Flavor(BaseModel):
    """One machine shape."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)

    name: str
    description: str = ""
    cpu: str
    """CPU request and limit, in Kubernetes quantity form (``"1"``, ``"500m"``)."""
    memory: str
    """Memory request and limit (``"4Gi"``)."""
    gpus: int = Field(0, ge=0)
    """Number of ``nvidia.com/gpu`` devices."""
    gpu_product: str | None = Field(None, alias="gpuProduct")
    """The GPU-feature-discovery product name the node must carry."""
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[Toleration] = Field(default_factory=list)

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def cpu_count(self) -> float:
        """CPU cores as a number, for sizing thread pools in the embedded mode."""
        return float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    def resources(self) -> dict[str, dict[str, str]]:
        """Container ``resources`` (requests equal limits: a guaranteed pod, as flavors are billed)."""
        amounts = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus:
            amounts[GPU_RESOURCE] = str(self.gpus)
        return {"requests": dict(amounts), "limits": dict(amounts)}

    def pod_node_selector(self) -> dict[str, str]:
        selector = dict(self.node_selector)
        if self.gpu_product:
            selector.setdefault(GPU_PRODUCT_LABEL, self.gpu_product)
        return selector

    def pod_tolerations(self) -> list[dict[str, Any]]:
        return [t.model_dump(exclude_none=True) for t in self.tolerations]


def _gpu(name: str, description: str, cpu: str, memory: str, gpus: int, product: str) -> Flavor:
    return Flavor(
        name=name,
        description=description,
        cpu=cpu,
        memory=memory,
        gpus=gpus,
        gpu_product=product,
        tolerations=[Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
    )


V100_PRODUCT = "Tesla-V100-SXM2-32GB"
A100_PRODUCT = "NVIDIA-A100-SXM4-80GB"

BUILTIN_FLAVORS: tuple[Flavor, ...] = (
    Flavor(name="cpu-1c-4g", description="1 vCPU, 4 GiB", cpu="1", memory="4Gi"),
    Flavor(name="cpu-2c-8g", description="2 vCPUs, 8 GiB", cpu="2", memory="8Gi"),
    Flavor(name="cpu-8c-32g", description="8 vCPUs, 32 GiB", cpu="8", memory="32Gi"),
    _gpu("gpu-v100-1", "1 x NVIDIA V100 32 GB, 8 vCPUs, 64 GiB", "8", "64Gi", 1, V100_PRODUCT),
    _gpu("gpu-v100-8", "8 x NVIDIA V100 32 GB, 64 vCPUs, 512 GiB", "64", "512Gi", 8, V100_PRODUCT),
    _gpu("gpu-a100-1", "1 x NVIDIA A100 80 GB, 12 vCPUs, 96 GiB", "12", "96Gi", 1, A100_PRODUCT),
)


class FlavorCatalogue:
    """Flavors by name."""

    def __init__(self, flavors: Mapping[str, Flavor]):
        self._flavors = dict(flavors)

    def __contains__(self, name: object) -> bool:
        return name in self._flavors

    def __getitem__(self, name: str) -> Flavor:
        try:
            return self._flavors[name]
        except KeyError:
            raise KeyError(f"unknown flavor {name!r}; known flavors: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._flavors)

    @classmethod
    def from_documents(cls, overrides: list[dict[str, Any]] | None = None) -> FlavorCatalogue:
        """The built-ins, then each override (a flavor mapping with a ``name``) replacing by name."""
        flavors = {f.name: f for f in BUILTIN_FLAVORS}
        for item in overrides or []:
            flavor = Flavor.model_validate(item)
            flavors[flavor.name] = flavor
        return cls(flavors)

    @classmethod
    def from_file(cls, path: str | Path) -> FlavorCatalogue:
        """Read a YAML file holding ``flavors: [...]`` (or a bare list)."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
        items = data.get("flavors", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list of flavors under 'flavors'")
        return cls.from_documents(items)


@lru_cache(maxsize=1)
def default_catalogue() -> FlavorCatalogue:
    """The built-ins, extended by the file named in ``$GALLEY_FLAVORS_FILE`` when set."""
    path = os.environ.get(FLAVORS_FILE_ENV)
    return FlavorCatalogue.from_file(path) if path else FlavorCatalogue.from_documents()
