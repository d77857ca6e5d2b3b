"""``galley validate``: the examples pass; broken manifests get one precise line per problem."""

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
