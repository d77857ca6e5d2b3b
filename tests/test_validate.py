"""``galley validate``: the examples pass; broken manifests get one precise line per problem."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from galley.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "02-s3"

VALID_JOB = """\
apiVersion: galley.dev/v1alpha1
kind: TrainingJob
metadata: {name: food}
spec:
  dataset: {uri: s3://food/data/}
  output: {uri: s3://food/output/}
"""


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    file = tmp_path / "job.yaml"
    file.write_text(text, encoding="utf-8")
    code = main(["validate", "-f", str(file)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "TrainingJob/food-resnet50: valid" in out
    assert "OnlineService/food-service: valid" in out


def test_minimal_job_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, VALID_JOB, capsys)[0] == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("  hyperparameters: {learning_rate_strategy: '10:0.1,5:0.01'}",
         "TrainingJob/food: spec.hyperparameters.learning_rate_strategy: epoch boundaries must increase strictly"),
        ("  hyperparameters: {learing_rate: '0.1'}",
         "TrainingJob/food: spec.hyperparameters: unknown hyperparameter 'learing_rate'; "
         "known: learning_rate_strategy"),
        ("  hyperparameters: {batch_size: 'many'}",
         "TrainingJob/food: spec.hyperparameters.batch_size: 'many' must be a positive integer"),
        ("  resources: {flavor: gpu-k80-1}",
         "TrainingJob/food: spec.resources.flavor: unknown flavor 'gpu-k80-1'; known flavors: "
         "cpu-1c-4g"),
        ("  resources: {nodes: 0}",
         "TrainingJob/food: spec.resources.nodes: Input should be greater than or equal to 1"),
        ("  algorithm: {name: vgg16}",
         "TrainingJob/food: spec.algorithm.name: expected 'resnet50', 'resnet18' or 'mobilenet_v2'"),
        ("  dataset: {uri: 'http://x/y'}",
         "TrainingJob/food: spec.dataset.uri: 'http://x/y' uses an unsupported scheme; expected s3://bucket/prefix/"),
        ("  storage: {secretRef: My_Secret}",
         "TrainingJob/food: spec.storage.secretRef: 'My_Secret' is not a valid name"),
        ("  extra: 1", "TrainingJob/food: spec.extra: is not a known field"),
    ],
)
def test_broken_training_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, expected: str) -> None:
    key = change.split(":")[0]
    lines = [line for line in VALID_JOB.splitlines() if not line.startswith(key + ":")]
    code, errors = validate(tmp_path, "\n".join([*lines, change]) + "\n", capsys)
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'job.yaml'}: {expected}"), errors[0]


def test_missing_dataset_and_bad_name_are_both_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID_JOB.replace("name: food", "name: Food_Job").replace("  dataset: {uri: s3://food/data/}\n", "")
    code, errors = validate(tmp_path, text, capsys)
    assert code == 1
    assert any(e.endswith("TrainingJob/Food_Job: spec.dataset: is required") for e in errors), errors
    assert any(": TrainingJob/Food_Job: metadata.name: 'Food_Job' is not a DNS label; a TrainingJob name is at most "
               "52 lowercase letters" in e for e in errors), errors


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("OnlineService", "s" * 60, f"metadata.name: '{'s' * 60}' is 60 characters long; an OnlineService name is at "
                                    "most 53 lowercase letters, digits and '-', starting with a letter and ending "
                                    "with a letter or digit, because its predictor's Deployment and Service are "
                                    "named NAME-predictor, and a Service name is a DNS-1035 label of 63 characters"),
        ("OnlineService", "s" * 54, "is 54 characters long; an OnlineService name is at most 53"),
        ("OnlineService", "4food", "metadata.name: '4food' starts with a digit; an OnlineService name is at most 53 "
                                   "lowercase letters, digits and '-', starting with a letter"),
        ("TrainingJob", "t" * 53, "is 53 characters long; a TrainingJob name is at most 52 lowercase letters, digits "
                                  "and '-', starting with a letter and ending with a letter or digit, because its "
                                  "trainer Job is named NAME-trainer, which its pods carry in the job-name label"),
        ("TrainingJob", "4food", "metadata.name: '4food' starts with a digit; a TrainingJob name is at most 52"),
    ],
)
def test_names_the_children_cannot_carry(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str,
                                         expected: str) -> None:
    spec = "{model: m}" if kind == "OnlineService" else "{dataset: {uri: s3://food/d/}, output: {uri: s3://food/o/}}"
    code, errors = validate(tmp_path, f"apiVersion: galley.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: '{name}'}}\n"
                                      f"spec: {spec}\n", capsys)
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'job.yaml'}: {kind}/{name}: ")
    assert expected in errors[0], errors[0]


@pytest.mark.parametrize(("kind", "name"), [("OnlineService", "s" * 53), ("TrainingJob", "t" * 52),
                                            ("OnlineService", "food-2"), ("TrainingJob", "f")])
def test_names_at_the_limits_are_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str,
                                       name: str) -> None:
    spec = "{model: m}" if kind == "OnlineService" else "{dataset: {uri: s3://food/d/}, output: {uri: s3://food/o/}}"
    code, errors = validate(tmp_path, f"apiVersion: galley.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: '{name}'}}\n"
                                      f"spec: {spec}\n", capsys)
    assert code == 0, errors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{model: m, autoStop: {after: 8d}}", "spec.autoStop.after: '8d' is longer than the maximum of 7 days"),
        ("{model: m, autoStop: {after: 0s}}", "spec.autoStop.after: '0s' must be longer than zero"),
        ("{model: m, autoStop: {after: soon}}", "spec.autoStop.after: 'soon' is not a duration; expected a number "
                                                "and a unit (s, m, h, d), like 90s, 30m, 1h"),
        ("{model: m, runtime: knative}", "spec.runtime: expected 'auto', 'kserve' or 'raw'"),
        ("{model: m, replicas: 0}", "spec.replicas: Input should be greater than or equal to 1"),
        ("{autoStop: {after: 1h}}", "spec.model: is required"),
        ("{model: m, autoStop: {}}", "spec.autoStop: set after, idle or both"),
        ("{model: m, autoStop: {idle: 2 hours}}", "spec.autoStop.idle: '2 hours' is not a duration; expected a "
                                                  "number and a unit (s, m, h, d), like 90s, 30m, 1h"),
        ("{model: m, expose: {ingress: {host: Food_Site}}}", "spec.expose.ingress.host: 'Food_Site' is not a DNS "
                                                             "host name; expected lowercase labels such as "
                                                             "food.example.com"),
        ("{model: m, expose: {ingress: {host: 169.254.169.254}}}", "spec.expose.ingress.host: '169.254.169.254' is "
                                                                   "an IP address; an ingress host must be a DNS name"),
        ("{model: m, expose: {ingress: {host: '0xa9fea9fe'}}}", "spec.expose.ingress.host: '0xa9fea9fe' is an IP "
                                                              "address"),
        ("{model: m, expose: {ingress: {host: food.internal.42}}}", "spec.expose.ingress.host: 'food.internal.42' is "
                                                                    "not a DNS host name: its last label '42' must "
                                                                    "start with a letter"),
    ],
)
def test_broken_online_services(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, expected: str) -> None:
    text = f"apiVersion: galley.dev/v1alpha1\nkind: OnlineService\nmetadata: {{name: svc}}\nspec: {spec}\n"
    code, errors = validate(tmp_path, text, capsys)
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'job.yaml'}: OnlineService/svc: {expected}"), errors


def test_model_needs_exactly_one_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("apiVersion: galley.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
            "spec: {source: {trainingJob: a, uri: s3://food/x/}}\n")
    code, errors = validate(tmp_path, text, capsys)
    assert code == 1
    assert errors == [f"{tmp_path / 'job.yaml'}: Model/m: spec.source: set exactly one of trainingJob and uri"]


def test_bad_yaml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, errors = validate(tmp_path, "kind: [unclosed\n", capsys)
    assert code == 1 and ": -: (yaml): " in errors[0]
    assert main(["validate", "-f", str(tmp_path / "absent.yaml")]) == 1
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'absent.yaml'}: -: (file): no such file"


def test_unknown_galley_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, errors = validate(tmp_path, "apiVersion: galley.dev/v1alpha1\nkind: Notebook\nmetadata: {name: n}\n", capsys)
    assert code == 1
    assert errors == [f"{tmp_path / 'job.yaml'}: Notebook/n: kind: expected one of TrainingJob, Model, OnlineService"]


# -- kubectl habits: standard input, -k, and folders that hold a kustomization -------------------

GITOPS = ROOT / "examples" / "07-gitops"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl on PATH: its kustomize is compared against")


@pytest.fixture(params=["kubectl", "galley"])
def builder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Build kustomizations with kubectl's kustomize, or with Galley's own reader (no kubectl to be found)."""
    monkeypatch.delenv("KUBECTL", raising=False)
    if request.param == "kubectl":
        if KUBECTL is None:
            pytest.skip("no kubectl on PATH")
    else:
        monkeypatch.setenv("PATH", str(tmp_path / "no-kubectl-here"))
    return str(request.param)


def copy_examples(tmp_path: Path) -> Path:
    """02-s3 and 07-gitops side by side, as the overlays' relative bases expect, to break at will."""
    examples = tmp_path / "examples"
    for name in ("02-s3", "07-gitops"):
        shutil.copytree(ROOT / "examples" / name, examples / name)
    return examples


def test_standard_input_is_read_for_a_dash_with_every_document_checked() -> None:
    text = VALID_JOB + "---\n" + VALID_JOB.replace("name: food", "name: food-2").replace("s3://food/output/", "ftp://x")
    text += "---\n- not a resource\n"
    result = subprocess.run([sys.executable, "-m", "galley.cli", "validate", "-f", "-"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "<stdin>: TrainingJob/food-2: spec.output.uri: 'ftp://x' uses an unsupported scheme; expected "
        "s3://bucket/prefix/ or a local path",
        "<stdin>: document 3: (document): expected a mapping with apiVersion and kind",
    ], result.stderr
    valid = subprocess.run([sys.executable, "-m", "galley.cli", "validate", "-f", "-"], input=VALID_JOB,
                           capture_output=True, text=True, timeout=60)
    assert (valid.returncode, valid.stdout) == (0, "TrainingJob/food: valid\n"), valid.stderr
    empty = subprocess.run([sys.executable, "-m", "galley.cli", "validate", "-f", "-"], input="",
                           capture_output=True, text=True, timeout=60)
    assert (empty.returncode, empty.stderr) == (1, "<stdin>: -: (file): no YAML documents on standard input\n")


@needs_kubectl
def test_kubectl_kustomize_piped_into_validate() -> None:
    assert KUBECTL is not None
    with subprocess.Popen([KUBECTL, "kustomize", str(GITOPS / "overlays" / "prod")], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as kustomize:
        result = subprocess.run([sys.executable, "-m", "galley.cli", "validate", "-f", "-"], stdin=kustomize.stdout,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"{kind}: valid (namespace food-prod)" for kind in
                                                  ("Model/food-model", "OnlineService/food-service",
                                                   "TrainingJob/food-resnet50")]


def test_a_folder_with_kustomizations_is_built_never_read_file_by_file(
        builder: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", f"{GITOPS}/"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(f"{kind}: valid{suffix}" for kind in ("Model/food-model", "OnlineService/food-service",
                                                                       "TrainingJob/food-resnet50")
                                 for suffix in ("", " (namespace food-dev)", " (namespace food-prod)"))
    for overlay in ("dev", "prod"):
        assert main(["validate", "-f", str(GITOPS / "overlays" / overlay)]) == 0
        assert main(["validate", "-k", str(GITOPS / "overlays" / overlay)]) == 0
        assert capsys.readouterr().out.count(f"valid (namespace food-{overlay})") == 6


def test_the_overlays_patches_reach_the_resources(builder: str) -> None:
    from galley.api.resources import OnlineService, TrainingJob
    from galley.manifests import load_resources

    built = {r.KIND: r for r in load_resources([], kustomizations=[GITOPS / "overlays" / "prod"])}
    job, service = built["TrainingJob"], built["OnlineService"]
    assert isinstance(job, TrainingJob) and isinstance(service, OnlineService)
    assert job.spec.resources.flavor == "gpu-v100-8"
    assert job.metadata.labels == {"app.kubernetes.io/part-of": "food-classification"}
    assert service.spec.replicas == 2 and service.spec.expose is not None
    assert {r.metadata.namespace for r in built.values()} == {"food-prod"}


def test_a_broken_patch_is_named_with_its_file(builder: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    examples = copy_examples(tmp_path)
    dev = examples / "07-gitops" / "overlays" / "dev"
    (dev / "trainingjob-patch.yaml").write_text("- op: replace\n  path: [/spec\n")
    (examples / "07-gitops" / "overlays" / "prod" / "model-patch.yaml").write_text(
        "- op: add\n  path: /spec/source/uri\n  value: s3://food/model/\n")
    assert main(["validate", "-f", str(examples / "07-gitops")]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2, errors
    if builder == "galley":
        assert errors[0].startswith(f"{dev / 'trainingjob-patch.yaml'}: -: (yaml): while parsing a flow sequence")
        assert errors[1] == (f"{examples / '07-gitops/overlays/prod/kustomization.yaml'}: Model/food-model: "
                             "spec.source: set exactly one of trainingJob and uri (from "
                             f"{examples / '02-s3/model.yaml'}, patched by "
                             f"{examples / '07-gitops/overlays/prod/model-patch.yaml'})")
    else:  # kubectl's own words, about the kustomization it built
        assert errors[0].startswith(f"{dev / 'kustomization.yaml'}: -: (kustomization): kubectl kustomize: ")
        assert "trainingjob-patch.yaml" in errors[0] and "\n" not in errors[0]
        assert errors[1] == (f"{examples / '07-gitops/overlays/prod/kustomization.yaml'}: Model/food-model: "
                             "spec.source: set exactly one of trainingJob and uri")


def test_galley_reader_names_the_operation_and_what_it_does_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECTL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-kubectl-here"))
    examples = copy_examples(tmp_path)
    dev = examples / "07-gitops" / "overlays" / "dev"
    (dev / "onlineservice-patch.yaml").write_text("- op: replace\n  path: /spec/autoStop\n  value: {idle: 15m}\n"
                                                  "- op: replace\n  path: /spec/scaling/maxReplicas\n  value: 3\n")
    assert main(["validate", "-k", str(dev)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{dev / 'onlineservice-patch.yaml'}: OnlineService/food-service: operation 2: path /spec/scaling/maxReplicas: "
        "'scaling' is not in the resource"]
    with (dev / "kustomization.yaml").open("a") as kustomization:
        kustomization.write("configMapGenerator: [{name: settings, literals: [a=b]}]\n")
    assert main(["validate", "-k", str(dev)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{dev / 'kustomization.yaml'}: -: configMapGenerator: is not supported by Galley's own kustomization reader "
        "(it reads resources, bases, namespace, namePrefix, nameSuffix, commonLabels, labels, commonAnnotations, "
        "patches, patchesStrategicMerge, patchesJson6902); install kubectl, or set $KUBECTL, to build it with "
        "kustomize"]


def test_k_needs_a_kustomization_and_does_not_mix_with_f(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-k", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"{tmp_path}: -: (kustomization): no kustomization.yaml, "
                                               "kustomization.yml or Kustomization in this folder")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-k", str(GITOPS / "base"), "-f", str(EXAMPLES)])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


SMALL_RESOURCES = """\
apiVersion: galley.dev/v1alpha1
kind: OnlineService
metadata: {name: svc, labels: {team: food}}
spec: {model: m, flavor: cpu-1c-4g, autoStop: {after: 1h}}
---
apiVersion: galley.dev/v1alpha1
kind: Model
metadata: {name: m}
spec: {source: {uri: s3://food/model/}, version: 0.0.1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""


@needs_kubectl
def test_galley_reader_builds_what_kubectl_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader is checked against kustomize itself on every field it claims to read."""
    import yaml

    from galley import kustomize

    base = tmp_path / "base"
    base.mkdir()
    (base / "resources.yaml").write_text(SMALL_RESOURCES)
    (base / "kustomization.yaml").write_text("resources: [resources.yaml]\nnamePrefix: food-\n"
                                             "commonAnnotations: {owner: platform}\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "smp.yaml").write_text("apiVersion: galley.dev/v1alpha1\nkind: OnlineService\nmetadata: {name: svc}\n"
                                      "spec: {replicas: 2, autoStop: {idle: 15m}}\n")
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base]\nnamespace: food\n"
        "nameSuffix: -v2\ncommonLabels: {app: food}\nlabels: [{pairs: {tier: serving}}]\n"
        "patchesStrategicMerge: [smp.yaml]\n"
        "patches:\n"
        "  - target: {kind: Model, name: food-m}\n"
        "    patch: |\n      - {op: replace, path: /spec/version, value: 1.0.0}\n"
        "      - {op: add, path: /spec/source/trainingJob, value: food}\n      - {op: remove, path: /spec/source/uri}\n"
        "  - target: {kind: OnlineService|Model}\n"
        "    patch: '{apiVersion: v1, kind: Any, metadata: {name: any, annotations: {patched: \"yes\"}}}'\n"
        "  - patch: |\n"
        "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: food-settings}\n"
        "      data: {a: null, c: d}\n")
    monkeypatch.delenv("KUBECTL", raising=False)
    assert KUBECTL is not None
    expected = kustomize.build_with_kubectl(KUBECTL, overlay, overlay / "kustomization.yaml")
    ours = kustomize._Reader().build(overlay)

    def key(document: dict[str, object]) -> str:
        return yaml.safe_dump(document, sort_keys=True)

    assert sorted(map(key, (b.document for b in ours))) == sorted(map(key, (b.document for b in expected.documents)))
