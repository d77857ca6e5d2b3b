"""The examples: a graded series, every file saying what it shows, every resource valid.

The real-node test builds the GitOps overlays with kubectl's own kustomize and applies every
example with a server-side dry run; here the overlays' JSON patches are applied by hand to check
that they hit fields the base has and leave valid resources.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from galley.manifests import load_resources

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SERIES = ["01-embedded", "02-s3", "03-model-from-uri", "04-kserve", "05-multi-node", "06-idle-stop", "07-gitops"]


def test_the_series_is_listed_and_every_file_says_what_it_shows() -> None:
    folders = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert folders == SERIES
    listed = re.findall(r"^\| `([0-9]{2}-[a-z0-9-]+)/` \| (.+) \|$", (EXAMPLES / "README.md").read_text(), re.M)
    assert [name for name, _ in listed] == SERIES
    for path in EXAMPLES.rglob("*.yaml"):
        series = path.relative_to(EXAMPLES).parts[0]
        assert path.read_text(encoding="utf-8").startswith(f"# {series}"), f"{path}: no '# {series} ...' comment"


@pytest.mark.parametrize("folder", SERIES[:6])
def test_each_example_validates_through_the_cli(folder: str) -> None:
    result = subprocess.run([sys.executable, "-m", "galley.cli", "validate", "-f", str(EXAMPLES / folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") >= 1


def _apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` and ``replace`` on object paths: what the overlays use."""
    patched = copy.deepcopy(document)
    for operation in operations:
        *parents, leaf = operation["path"].strip("/").split("/")
        node = patched
        for key in parents:
            assert key in node, f"{operation['path']}: {key!r} is not in the base"
            node = node[key]
        if operation["op"] == "replace":
            assert leaf in node, f"{operation['path']}: replace needs a field the base has"
        else:
            assert operation["op"] == "add", operation
        node[leaf] = operation["value"]
    return patched


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_gitops_overlay_patches_fields_of_the_base_into_valid_resources(overlay: str, tmp_path: Path) -> None:
    folder = EXAMPLES / "07-gitops" / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["bases"] == ["../../base"]
    base_folder = EXAMPLES / "07-gitops" / "base"
    documents: list[dict[str, Any]] = []
    for reference in yaml.safe_load((base_folder / "kustomization.yaml").read_text())["bases"]:
        source = (base_folder / reference).resolve()
        listed = yaml.safe_load((source / "kustomization.yaml").read_text())["resources"]
        documents += [yaml.safe_load((source / name).read_text()) for name in listed]
    for patch in kustomization["patchesJson6902"]:
        target = patch["target"]
        matches = [d for d in documents if (d["kind"], d["metadata"]["name"]) == (target["kind"], target["name"])]
        assert len(matches) == 1, f"{overlay}: {target} matches {len(matches)} resources of the base"
        operations = yaml.safe_load((folder / patch["path"]).read_text())
        documents[documents.index(matches[0])] = _apply_json_patch(matches[0], operations)
    built = tmp_path / f"{overlay}.yaml"
    built.write_text(yaml.safe_dump_all(documents, allow_unicode=True))
    resources = load_resources([built])
    assert sorted(r.KIND for r in resources) == ["Model", "OnlineService", "TrainingJob"]


def test_the_embedded_example_finds_its_photos_and_weights_after_demo_data_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """01-embedded names relative paths: after `galley demo --data-only` in the same folder, they exist."""
    from galley.trainer.weights import find_pretrained

    monkeypatch.delenv("GALLEY_HOME", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-cache"))  # only the installed file can be found
    prepared = subprocess.run([sys.executable, "-m", "galley.cli", "demo", "--data-only"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "photo set ready:" in prepared.stdout
    job = next(d for d in yaml.safe_load_all((EXAMPLES / "01-embedded" / "resources.yaml").read_text())
               if d["kind"] == "TrainingJob")
    manifest = tmp_path / job["spec"]["dataset"]["uri"]
    assert manifest.is_file() and len(manifest.read_text().splitlines()) >= 100
    algorithm = job["spec"]["algorithm"]
    _, source = find_pretrained(algorithm["name"], algorithm.get("weights"))
    assert source.endswith("mobilenet_v2-b0353104.pth")
