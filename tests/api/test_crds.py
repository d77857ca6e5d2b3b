"""The CRDs in crds/ are exactly what the models generate, and they are structural."""

from pathlib import Path
from typing import Any

import yaml

from galley.api.crds import all_crds

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    generated = all_crds()
    committed = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in CRDS.glob("*.yaml")}
    assert sorted(committed) == sorted(generated), "run `galley crds` to regenerate crds/"
    for name, crd in generated.items():
        assert committed[name] == crd, f"crds/{name} is stale: run `galley crds`"


def _walk(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of nodes that break the structural-schema rules the API server enforces."""
    problems = []
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties together")
    for key in ("$ref", "anyOf", "allOf", "title", "const"):
        if key in schema:
            problems.append(f"{path}: {key}")
    for name, sub in schema.get("properties", {}).items():
        problems += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += _walk(schema["items"], f"{path}[]")
    return problems


def test_schemas_are_structural_with_status_subresource_and_short_names() -> None:
    crds = all_crds()
    for crd in crds.values():
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert _walk(version["schema"]["openAPIV3Schema"]) == []
    short = {c["spec"]["names"]["kind"]: c["spec"]["names"].get("shortNames") for c in crds.values()}
    assert short == {"TrainingJob": ["tj"], "Model": None, "OnlineService": ["osvc"]}


def test_printer_columns_read_conditions_by_type() -> None:
    for crd in all_crds().values():
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            assert "conditions[-1" not in column["jsonPath"] and "conditions[0" not in column["jsonPath"]
