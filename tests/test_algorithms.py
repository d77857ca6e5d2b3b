"""``galley algorithms``: the catalogue is the table that checks hyperparameters, the networks the
trainer builds and the weights a job started here would find, said without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from galley.api import hyperparameters as hp
from galley.api.resources import AlgorithmName


def galley(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "galley.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def accepts(h: hp.Hyperparameter, text: str) -> bool:
    try:
        hp.parse_one(h.name, text)
    except ValueError:
        return False
    return True


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@pytest.mark.parametrize("h", hp.HYPERPARAMETERS, ids=lambda h: h.name)
def test_allowed_values_say_what_the_parser_accepts_at_every_bound_and_choice(h: hp.Hyperparameter) -> None:
    allowed = h.allowed
    assert accepts(h, h.default), f"{h.name}: its default {h.default!r} is refused"
    if allowed.kind in ("choice", "boolean"):
        assert allowed.choices and all(accepts(h, choice) for choice in allowed.choices)
        assert not accepts(h, "maybe") and h.default in allowed.choices
    elif allowed.kind == "learning_rate_strategy":
        assert allowed.maximum is not None
        assert accepts(h, f"{_plain(allowed.maximum)}:0.001") and not accepts(h, f"{_plain(allowed.maximum + 1)}:0.001")
        assert accepts(h, "0.01") and not accepts(h, "20:0")
    else:
        assert allowed.minimum is not None
        step = 1 if allowed.kind == "integer" else 0.001
        assert accepts(h, _plain(allowed.minimum)) and not accepts(h, _plain(allowed.minimum - step))
        if allowed.maximum is None:
            assert accepts(h, "1000000000")
        else:
            assert accepts(h, _plain(allowed.maximum)) != allowed.maximum_excluded
            assert accepts(h, _plain(allowed.maximum - step)) and not accepts(h, _plain(allowed.maximum + step))
        if allowed.kind == "integer":
            assert not accepts(h, "1.5")


def test_the_json_is_the_table_with_this_machines_weights(tmp_path: Path) -> None:
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(b"planted")
    result = galley("algorithms", "-o", "json", env={"TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 0, result.stderr
    found = {a["name"]: a for a in json.loads(result.stdout)["algorithms"]}
    assert list(found) == list(get_args(AlgorithmName))
    weights = {name: (a["imagenetWeights"]["found"], a["imagenetWeights"]["path"]) for name, a in found.items()}
    assert weights["resnet50"] == (False, None)
    assert found["resnet50"]["imagenetWeights"]["looked"] == [str(cache / "resnet50-11ad3fa6.pth"),
                                                              str(cache / "resnet50-0676ba61.pth")]
    assert weights["resnet18"] == (True, str(cache / "resnet18-f37072fd.pth"))
    assert weights["mobilenet_v2"][0] and weights["mobilenet_v2"][1].endswith("mobilenet_v2-b0353104.pth")
    for algorithm in found.values():
        assert algorithm["inputSize"] == 224 and algorithm["resizeSize"] == 256
        assert [(p["name"], p["default"], p["description"]) for p in algorithm["hyperparameters"]] == \
            [(h.name, h.default, h.description) for h in hp.HYPERPARAMETERS]
    by_name: dict[str, Any] = {p["name"]: p for p in found["resnet50"]["hyperparameters"]}
    assert by_name["optimizer"]["allowed"] == {"kind": "choice", "text": "one of adam, adamw, sgd",
                                               "choices": ["adam", "adamw", "sgd"]}
    assert by_name["max_epochs"]["allowed"] == {"kind": "integer", "text": "an integer in 1..10000", "minimum": 1,
                                                "maximum": 10000, "maximumExcluded": False}
    assert by_name["momentum"]["allowed"]["text"] == "a number in [0, 1)"


def test_the_text_names_every_algorithm_and_hyperparameter_without_importing_torch(tmp_path: Path) -> None:
    code = ("import sys; from galley.cli import main; code = main(['algorithms']); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TORCH_HOME": str(tmp_path / "empty")})
    assert (result.returncode, result.stderr.strip()) == (0, "no torch"), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ALGORITHM", "NETWORK", "PARAMETERS", "INPUT", "IMAGENET", "WEIGHTS"]
    assert lines[1].split()[:6] == ["resnet50", "ResNet-50", "25.6", "M", "224x224", "(resize"]
    assert lines[1].endswith("not found here") and "found: " in lines[3]
    assert f"resnet50: no ImageNet weights here (looked in {tmp_path / 'empty' / 'hub' / 'checkpoints'}" \
        in result.stdout
    for h in hp.HYPERPARAMETERS:
        assert f"  {h.name} (default {h.default!r})\n      allowed: {h.allowed}\n      {h.description}\n" \
            in result.stdout + "\n"
    one = galley("algorithms", "mobilenet_v2")
    assert one.returncode == 0 and "resnet50" not in one.stdout and "MobileNetV2" in one.stdout
    unknown = galley("algorithms", "vgg16")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "no algorithm 'vgg16'; known: resnet50, resnet18, "
                                                               "mobilenet_v2")


def test_the_networks_are_those_the_trainer_builds() -> None:
    from galley import catalogue
    from galley.model import architectures

    assert list(catalogue.NETWORKS) == list(architectures.ARCHITECTURES) == list(get_args(AlgorithmName))
    for name, network in catalogue.NETWORKS.items():
        built = architectures.build(name, 1000)
        assert sum(p.numel() for p in built.parameters()) == network.parameters, name
        assert architectures.head(built).in_features == network.features, name
        assert network.source == f"torchvision.models.{architectures.ARCHITECTURES[name].__name__}"


def test_the_trainer_starts_from_the_file_the_catalogue_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from galley.trainer import pretrained
    from galley.trainer.weights import find_pretrained

    for variables in ({"TORCH_HOME": str(tmp_path / "t")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        assert pretrained.torch_cache() == Path(torch.hub.get_dir()) / "checkpoints"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    planted = pretrained.torch_cache() / "resnet18-f37072fd.pth"
    planted.parent.mkdir(parents=True)
    torch.save({"fc.bias": torch.zeros(3)}, planted)
    assert pretrained.locate("resnet18").path == planted
    state, source = find_pretrained("resnet18", None)
    assert source == str(planted) and list(state) == ["fc.bias"]
