"""The Helm chart with real helm: lint, values checked by the schema, manifests valid for Kubernetes,
applied to the envtest API server, and the operator running from the rendered Deployment's command
under the chart's own permissions."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client, dynamic

from galley.console.rbac import RULES as CONSOLE_RULES
from galley.operator.rbac import RULES
from galley.testing.envtest import Envtest
from galley.testing.operator import eventually

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "galley"
HELM = ROOT / "scripts" / "helm"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render(*values: str, release: str = "galley", namespace: str = "galley-system") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def test_lint_is_clean() -> None:
    result = helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in result.stdout


def test_chart_crds_are_the_generated_crds() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    packaged = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert packaged == generated, "copy crds/*.yaml into helm/galley/crds/"


def test_defaults_render_a_hardened_operator_with_a_cluster_role() -> None:
    documents = render()
    deployment = by_kind(documents, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"] == ["python", "-m", "galley.operator"]
    role = by_kind(documents, "ClusterRole")[0]
    assert role["rules"] == RULES, "helm/galley/templates/_helpers.tpl and galley/operator/rbac.py disagree"
    assert not by_kind(documents, "Role")
    assert "AWS_SECRET_ACCESS_KEY" not in yaml.safe_dump_all(documents)


def test_namespaced_mode_uses_roles_and_watches_only_those_namespaces() -> None:
    documents = render("--set", "watchNamespaces={team-a,team-b}")
    roles = by_kind(documents, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == RULES for r in roles)
    args = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_custom_flavors_land_in_the_config_map(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("flavors:\n- {name: gpu-t4-1, cpu: '4', memory: 16Gi, gpus: 1, gpuProduct: Tesla-T4}\n")
    config_map = by_kind(render("-f", str(values)), "ConfigMap")[0]
    flavors = yaml.safe_load(config_map["data"]["flavors.yaml"])["flavors"]
    assert flavors[0]["gpuProduct"] == "Tesla-T4"
    assert config_map["metadata"]["labels"]["galley.dev/flavors"] == "catalogue", "what validate --cluster finds"
    from galley.api.flavors import FlavorCatalogue

    catalogue_file = tmp_path / "flavors.yaml"
    catalogue_file.write_text(config_map["data"]["flavors.yaml"])
    assert "gpu-t4-1" in FlavorCatalogue.from_file(catalogue_file)


def test_storage_defaults_reach_the_operator_as_settings() -> None:
    deployment = by_kind(render("--set", "storage.endpoint=https://s3.internal.example",
                                "--set", "storage.defaultSecret=team-storage"), "Deployment")[0]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GALLEY_STORAGE_ENDPOINT"] == "https://s3.internal.example"
    assert env["GALLEY_DEFAULT_STORAGE_SECRET"] == "team-storage"
    assert "AWS_ENDPOINT_URL" not in env and "AWS_ACCESS_KEY_ID" not in env, "no identity of its own to lend"


def test_one_operator_at_a_time_even_during_an_upgrade() -> None:
    deployment = by_kind(render(), "Deployment")[0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicas=2"], "replicas"),
        (["--set", "watchNamespaces={Team_A}"], "watchNamespaces"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "surprise=1"], "surprise"),
        (["--set", "flavors[0].name=x"], "cpu"),
    ],
)
def test_bad_values_are_refused_at_install_time(values: list[str], message: str) -> None:
    result = helm("template", "galley", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr.lower() and message in result.stderr


def test_rendered_manifests_validate_against_kubernetes_schemas() -> None:
    for document in render() + render("--set", "watchNamespaces={team-a}"):
        kubernetes_validate.validate(document, "1.30", strict=True)


def _namespaces(envtest: Envtest, *names: str) -> tuple[dynamic.DynamicClient, client.CoreV1Api]:
    """Clients for the API server, with the namespaces there (made by this test or an earlier one)."""
    core = client.CoreV1Api(envtest.api)
    for name in names:
        try:
            core.create_namespace({"metadata": {"name": name}})
        except client.ApiException as error:
            assert error.status == 409
    return dynamic.DynamicClient(envtest.api), core


def _apply(resources: dynamic.DynamicClient, document: dict[str, Any], dry_run: bool) -> None:
    api = resources.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    namespace = document["metadata"].get("namespace") if api.namespaced else None
    try:
        api.create(body=document, namespace=namespace, dry_run="All" if dry_run else None)
    except dynamic.exceptions.ConflictError:
        if dry_run:
            return
        current = api.get(name=document["metadata"]["name"], namespace=namespace)
        document = {**document, "metadata": {**document["metadata"],
                                             "resourceVersion": current.metadata.resourceVersion}}
        if document["kind"] == "Service":  # a Service keeps the cluster IP it was given, as kubectl apply keeps it
            document["spec"] = {**document["spec"], "clusterIP": current.spec.clusterIP}
        api.replace(body=document, namespace=namespace)


@pytest.mark.envtest
def test_chart_applies_and_its_operator_reconciles_the_example_under_its_own_role(envtest: Envtest,
                                                                                  tmp_path: Path) -> None:
    resources, _ = _namespaces(envtest, "galley-system", "food")
    documents = render("--set", "watchNamespaces={food}")
    for document in documents:
        _apply(resources, document, dry_run=True)
    for document in documents:
        if document["kind"] != "Deployment":  # no kubelet: the operator runs here, from the same command
            _apply(resources, document, dry_run=False)
    container = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    environment = {e["name"]: e["value"] for e in container["env"] if e["name"] != "GALLEY_FLAVORS_FILE"}
    command = [sys.executable if part == "python" else part for part in container["command"]]
    command += [a for a in container["args"] if not a.startswith("--liveness")] + ["--liveness", ""]
    log = tmp_path / "operator.log"
    import os

    assert environment.pop("GALLEY_METRICS_PORT") == "9090"  # here any free port: tests may run side by side
    env = {**os.environ, **environment, "GALLEY_OPERATOR_INTERVAL": "1", "GALLEY_METRICS_PORT": "0",
           "KUBECONFIG": str(envtest.kubeconfig_for("operator"))}  # the chart's ServiceAccount identity
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        example = yaml.safe_load((ROOT / "examples" / "02-s3" / "trainingjob.yaml").read_text())
        example["spec"].pop("storage")
        client.CustomObjectsApi(envtest.api).create_namespaced_custom_object(
            "galley.dev", "v1alpha1", "food", "trainingjobs", example)
        job = eventually(lambda: client.BatchV1Api(envtest.api).read_namespaced_job("food-resnet50-trainer", "food"),
                         message=lambda: log.read_text()[-3000:] + f"\ncommand: {shlex.join(command)}")
        assert job.spec.template.spec.containers[0].image == environment["GALLEY_TRAINER_IMAGE"]
        assert job.spec.template.spec.node_selector == {"nvidia.com/gpu.product": "Tesla-V100-SXM2-32GB"}
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_dockerfiles_lint_clean_and_their_entrypoints_start() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    for dockerfile in sorted(ROOT.glob("Dockerfile.*")):
        result = subprocess.run([str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, f"{dockerfile.name}: {result.stdout}"
        entrypoint = next(line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT"))
        module = yaml.safe_load(entrypoint.removeprefix("ENTRYPOINT"))[-1]
        started = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert started.returncode == 0 and "usage:" in started.stdout, (module, started.stderr)


def test_predictor_never_imports_the_trainer() -> None:
    code = ("import sys, galley.predictor.server, galley.predictor.app, galley.predictor.model; "
            "print([m for m in sys.modules if m.startswith('galley.trainer')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_operator_and_console_never_import_the_trainer() -> None:
    """The contracts they share with the trainer (progress, termination message, the report's
    rendering) live in galley.control and galley.model, so training code never runs beside them."""
    code = ("import sys, galley.operator.handlers, galley.console.app, galley.console.server, galley.cluster; "
            "print([m for m in sys.modules if m.startswith('galley.trainer')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_operator_and_console_never_import_torch() -> None:
    """The operator image (which also runs the console) carries no torch: reading a package's
    config.json and report must not need it."""
    code = "import sys, galley.operator.handlers, galley.console.app, galley.cluster; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_examples_are_a_kustomize_base_of_valid_resources() -> None:
    base = ROOT / "examples" / "02-s3"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml")
    from galley.manifests import load_resources

    assert len(load_resources([base])) == 3


def test_the_console_is_off_by_default_and_bounded_when_on() -> None:
    assert not [d for d in render() if "console" in d["metadata"]["name"]]
    documents = render("--set", "console.enabled=true", "--set", "console.namespace=food")
    console = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "galley-console")
    container = console["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["galley", "console"]
    assert "--cluster" in container["args"] and "--namespace=food" in container["args"]
    token = next(e for e in container["env"] if e["name"] == "GALLEY_CONSOLE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "galley-console-token", "key": "token"}
    assert console["spec"]["template"]["spec"]["serviceAccountName"] == "galley-console"
    role = next(d for d in by_kind(documents, "Role") if d["metadata"]["name"] == "galley-console")
    assert role["metadata"]["namespace"] == "food"
    assert role["rules"] == CONSOLE_RULES, "helm/galley/templates/_helpers.tpl and galley/console/rbac.py disagree"
    for rule in role["rules"]:
        assert "secrets" not in rule["resources"] and "*" not in rule["verbs"] + rule["resources"]
        if set(rule["verbs"]) - {"get", "list", "watch"}:  # every change it may make is on Galley's resources
            assert rule["apiGroups"] == ["galley.dev"], rule
    # Its pods are not the operator's: the two Deployments' selectors do not overlap.
    operator = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "galley-operator")
    assert operator["spec"]["selector"]["matchLabels"] != console["spec"]["selector"]["matchLabels"]
    named = render("--set", "console.enabled=true", "--set", "console.allowedHosts={galley-console.galley-system.svc}")
    console = next(d for d in by_kind(named, "Deployment") if d["metadata"]["name"] == "galley-console")
    arguments = console["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-host=galley-console.galley-system.svc" in arguments


@pytest.mark.envtest
def test_the_charts_console_works_under_its_own_role_and_reads_no_secret(envtest: Envtest, tmp_path: Path) -> None:
    import os

    import httpx

    from galley.testing.processes import console as run_console

    resources, core = _namespaces(envtest, "galley-system", "food")
    documents = render("--set", "console.enabled=true", "--set", "console.namespace=food")
    for document in documents:
        if document["kind"] != "Deployment":  # no kubelet: the console runs here, from the same command
            _apply(resources, document, dry_run=False)
    objects = client.CustomObjectsApi(envtest.api)
    service = {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
               "spec": {"model": "food-model"}}
    objects.create_namespaced_custom_object("galley.dev", "v1alpha1", "food", "onlineservices", service)
    console = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "galley-console")
    container = console["spec"]["template"]["spec"]["containers"][0]
    token = base64_decode(core.read_namespaced_secret("galley-console-token", "galley-system").data["token"])
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(core.read_namespaced_config_map("galley-operator-flavors", "galley-system").data["flavors.yaml"])
    env = {**os.environ, "KUBECONFIG": str(envtest.kubeconfig_for("console")), "GALLEY_CONSOLE_TOKEN": token,
           "GALLEY_FLAVORS_FILE": str(flavors)}
    arguments = [a for a in container["args"] if not a.startswith(("--host", "--port"))]
    with run_console(*arguments, env=env) as url, httpx.Client(base_url=url, timeout=30) as web:
        signed = {"Authorization": f"Bearer {token}"}
        assert web.get("/").status_code == 401  # its Service is reachable in the cluster: reads need the token
        assert "food-service" in web.get("/", headers=signed).text
        assert web.post("/services/food-service/stop", follow_redirects=False).status_code == 401
        assert web.post("/services/food-service/stop", headers=signed, follow_redirects=False).status_code == 303
    stopped = objects.get_namespaced_custom_object("galley.dev", "v1alpha1", "food", "onlineservices", "food-service")
    assert stopped["spec"]["stopped"] is True
    as_console = client.CoreV1Api(envtest.client_for("console"))
    with pytest.raises(client.ApiException) as refused:
        as_console.list_namespaced_secret("food")
    assert refused.value.status == 403


def base64_decode(text: str) -> str:
    import base64

    return base64.b64decode(text).decode()


def test_the_wheel_carries_no_test_code(tmp_path: Path) -> None:
    """What the images (and a user's pip install) get: Galley's modules and page files, none of the
    tests' helpers (fault proxy, node driver, the KServe schema generator)."""
    import shutil
    import zipfile

    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' staging folder: stale files would come along
    try:
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                                "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert built.returncode == 0, built.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("galley-*.whl"))).namelist()
    assert not [n for n in names if n.startswith("galley/testing/")]
    assert {"galley/cli.py", "galley/predictor/static/index.html", "galley/console/templates/model.html"} <= set(names)


def test_metrics_are_served_exposed_and_optionally_monitored_with_the_dashboard_in_the_chart() -> None:
    documents = render("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.dashboard.enabled=true",
                       "--set", "metrics.serviceMonitor.labels.release=prometheus")
    container = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "GALLEY_METRICS_PORT", "value": "9090"} in container["env"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service = next(s for s in by_kind(documents, "Service") if s["metadata"]["name"] == "galley-operator-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = by_kind(documents, "ServiceMonitor")[0]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    dashboard = next(c for c in by_kind(documents, "ConfigMap") if c["metadata"]["name"] == "galley-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    import json

    assert json.loads(dashboard["data"]["galley-operator.json"]) == \
        json.loads((CHART / "dashboards" / "galley-operator.json").read_text())
    plain = render()
    assert not by_kind(plain, "ServiceMonitor") and "galley-operator-dashboard" not in \
        [c["metadata"]["name"] for c in by_kind(plain, "ConfigMap")]
    off = render("--set", "metrics.enabled=false")
    env = by_kind(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "GALLEY_METRICS_PORT" not in {e["name"] for e in env}
    assert "galley-operator-metrics" not in [s["metadata"]["name"] for s in by_kind(off, "Service")]
