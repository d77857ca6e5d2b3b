"""The flavor catalogue: built-ins for the reference case, and overrides from a file."""

from pathlib import Path

import pytest

from galley.api.flavors import GPU_PRODUCT_LABEL, GPU_RESOURCE, FlavorCatalogue


def test_v100_flavor_lands_on_a_v100_node() -> None:
    v100 = FlavorCatalogue.from_documents()["gpu-v100-1"]
    assert v100.resources()["limits"][GPU_RESOURCE] == "1"
    assert "V100" in v100.pod_node_selector()[GPU_PRODUCT_LABEL]
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in v100.pod_tolerations()


def test_builtins_cover_the_documented_shapes() -> None:
    names = FlavorCatalogue.from_documents().names()
    assert {"cpu-1c-4g", "cpu-2c-8g", "gpu-v100-1", "gpu-v100-8", "gpu-a100-1"} <= set(names)
    cpu = FlavorCatalogue.from_documents()["cpu-1c-4g"]
    assert cpu.resources() == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "1", "memory": "4Gi"}}
    assert cpu.pod_node_selector() == {} and cpu.cpu_count == 1.0


def test_override_file_adds_and_replaces(tmp_path: Path) -> None:
    file = tmp_path / "flavors.yaml"
    file.write_text(
        "flavors:\n"
        "- {name: cpu-1c-4g, cpu: 1500m, memory: 6Gi}\n"
        "- {name: gpu-t4-1, cpu: '4', memory: 16Gi, gpus: 1, gpuProduct: Tesla-T4,"
        " tolerations: [{key: nvidia.com/gpu}]}\n",
        encoding="utf-8",
    )
    catalogue = FlavorCatalogue.from_file(file)
    assert catalogue["cpu-1c-4g"].memory == "6Gi"
    assert catalogue["cpu-1c-4g"].cpu_count == 1.5
    assert catalogue["gpu-t4-1"].pod_node_selector() == {GPU_PRODUCT_LABEL: "Tesla-T4"}
    assert "gpu-v100-1" in catalogue


def test_unknown_flavor_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known flavors: cpu-1c-4g"):
        FlavorCatalogue.from_documents()["gpu-k80-1"]
