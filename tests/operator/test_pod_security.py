"""Every pod Galley renders passes Pod Security ``restricted`` (checked by tests/podsecurity.py),
carries no API token, and writes only to its emptyDir scratch, under a read-only root.

The envtest API server is Kubernetes 1.20, which has no Pod Security admission: the checker is
what proves it there, run over the builders' output, over the pods kube-controller-manager makes
from them, and over what KServe's own schema keeps of an InferenceService.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from galley.api.flavors import FlavorCatalogue
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.operator import builders
from galley.operator.settings import OperatorSettings
from galley.testing.envtest import Envtest
from galley.testing.operator import eventually
from tests.podsecurity import containers, pods_of, violations

SETTINGS = OperatorSettings(trainer_image="registry.example/trainer:1", predictor_image="registry.example/predictor:1",
                            image_pull_policy="IfNotPresent", trainer_service_account="trainer",
                            predictor_service_account="predictor", storage_endpoint="https://s3.example")
CATALOGUE = FlavorCatalogue.from_documents()


def training_job(nodes: int) -> TrainingJob:
    return TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
        "spec": {"algorithm": {"name": "resnet50"}, "dataset": {"uri": "s3://food/data/"},
                 "hyperparameters": {"learning_rate_strategy": "20:0.001"}, "output": {"uri": "s3://food/out/"},
                 "storage": {"secretRef": "s3-credentials"}, "resources": {"flavor": "gpu-v100-8", "nodes": nodes}},
    })


def service_and_model(runtime: str) -> tuple[OnlineService, Model]:
    service = OnlineService.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
        "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "runtime": runtime,
                 "storage": {"secretRef": "s3-credentials"}}})
    model = Model.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
        "spec": {"source": {"uri": "s3://food/out/model/"}},
        "status": {"uri": "s3://food/out/model/", "conditions": []}})
    return service, model


def trainer(nodes: int) -> dict[str, Any]:
    return builders.build_trainer_job(training_job(nodes), CATALOGUE["gpu-v100-8" if nodes > 1 else "gpu-v100-1"],
                                      SETTINGS)


def deployment() -> dict[str, Any]:
    return builders.build_deployment(*service_and_model("raw"), CATALOGUE["cpu-1c-4g"], SETTINGS, True)


def inference_service() -> dict[str, Any]:
    return builders.build_inference_service(*service_and_model("kserve"), CATALOGUE["cpu-1c-4g"], SETTINGS, True)


RENDERED: dict[str, Callable[[], dict[str, Any]]] = {
    "trainer, one node": lambda: trainer(1),
    "trainer, multi-node workers": lambda: trainer(2),
    "raw predictor Deployment": deployment,
    "KServe predictor": inference_service,
}


def the_pod(manifest: dict[str, Any]) -> dict[str, Any]:
    found = pods_of(manifest)
    assert len(found) == 1, found
    return dict(found[0][1])


@pytest.mark.parametrize("name", list(RENDERED))
def test_every_rendered_pod_passes_the_restricted_profile(name: str) -> None:
    manifest = RENDERED[name]()
    for where, pod, pod_annotations in pods_of(manifest):
        assert violations(pod, pod_annotations) == [], where
    assert pods_of(manifest), "the checker found the pod spec"


@pytest.mark.parametrize("name", list(RENDERED))
def test_no_rendered_pod_mounts_an_api_token(name: str) -> None:
    """Neither the trainer nor the predictor calls the API server (the import test below)."""
    assert the_pod(RENDERED[name]())["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", list(RENDERED))
def test_the_root_filesystem_is_read_only_and_tmp_is_an_empty_dir(name: str) -> None:
    pod = the_pod(RENDERED[name]())
    volumes = {v["name"]: v for v in pod["volumes"]}
    for where, container in containers(pod):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp is not an emptyDir"
        assert all("emptyDir" in volumes[v] for v in mounts.values()), f"{where}: every writable path is scratch"


API_CLIENTS = ("kubernetes", "kopf", "galley.cluster", "galley.operator", "galley.console")
"""Modules through which Galley code reaches the API server."""


def _imported_names(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_trainers_and_predictors_code_never_reaches_the_api_server() -> None:
    """What lets their pods go without a token. Every Galley module the two processes load is read:
    none imports a Kubernetes client, and none builds KServe's (``import kserve`` itself loads the
    ``kubernetes`` package for its SDK's KServeClient, which only a caller that constructs one uses)."""
    code = ("import json, sys, galley.trainer.__main__, galley.trainer.engine, galley.predictor.__main__, "
            "galley.predictor.server, galley.predictor.app, galley.predictor.model; "
            "print(json.dumps({m: getattr(sys.modules[m], '__file__', None) for m in sys.modules "
            "if m == 'galley' or m.startswith('galley.')}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])
    assert "galley.trainer.engine" in loaded and "galley.predictor.server" in loaded
    assert not [m for m in loaded if m.startswith(API_CLIENTS)], "a process loads an API client"
    for module, path in loaded.items():
        if path is None:  # a namespace package: no code of its own
            continue
        source = Path(path).read_text()
        reached = {name for name in _imported_names(source) if name.startswith(API_CLIENTS)}
        assert not reached, f"{module} imports {reached}"
        assert "KServeClient" not in source and "load_incluster_config" not in source, module


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A breakage: set the dotted ``path`` (``containers.0.securityContext.privileged``) to ``value``."""
    def apply(pod: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = pod
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return apply


def _unset_on_pod_and_container(field: str) -> Callable[[dict[str, Any]], None]:
    def apply(pod: dict[str, Any]) -> None:
        _set(f"securityContext.{field}", None)(pod)
        _set(f"containers.0.securityContext.{field}", None)(pod)
    return apply


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "host network": (_set("hostNetwork", True), "spec.hostNetwork"),
    "host PID": (_set("hostPID", True), "spec.hostPID"),
    "host IPC": (_set("hostIPC", True), "spec.hostIPC"),
    "privileged": (_set("containers.0.securityContext.privileged", True), "privileged"),
    "host process": (_set("containers.0.securityContext.windowsOptions", {"hostProcess": True}), "hostProcess"),
    "escalation allowed": (_set("containers.0.securityContext.allowPrivilegeEscalation", True),
                           "allowPrivilegeEscalation"),
    "escalation unset": (_set("containers.0.securityContext.allowPrivilegeEscalation", None),
                         "allowPrivilegeEscalation"),
    "root allowed": (_set("containers.0.securityContext.runAsNonRoot", False), "runAsNonRoot"),
    "non-root unset on pod and container": (_unset_on_pod_and_container("runAsNonRoot"), "runAsNonRoot"),
    "uid 0": (_set("containers.0.securityContext.runAsUser", 0), "runAsUser"),
    "seccomp unconfined": (_set("containers.0.securityContext.seccompProfile", {"type": "Unconfined"}), "seccomp"),
    "seccomp unset on pod and container": (_unset_on_pod_and_container("seccompProfile"),
                                           "seccompProfile must be set"),
    "capabilities kept": (_set("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}), "drop"),
    "capability added": (_set("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
                         "SYS_ADMIN"),
    "host path": (lambda pod: pod["volumes"].append({"name": "root", "hostPath": {"path": "/"}}), "hostPath"),
    "NFS volume": (lambda pod: pod["volumes"].append({"name": "nfs", "nfs": {"server": "n", "path": "/"}}), "nfs"),
    "host port": (_set("containers.0.ports", [{"containerPort": 8080, "hostPort": 8080}]), "hostPort"),
    "unsafe sysctl": (_set("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctl"),
    "unmasked proc": (_set("containers.0.securityContext.procMount", "Unmasked"), "procMount"),
    "custom SELinux type": (_set("containers.0.securityContext.seLinuxOptions", {"type": "spc_t"}), "seLinux"),
    "AppArmor off": (_set("containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}), "appArmor"),
    "init container left open": (_set("initContainers", [{"name": "init", "image": "busybox"}]), "initContainers[0]"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_checker_flags_each_broken_rule(breakage: str) -> None:
    """The checker can fail: one rule broken in a passing pod is found, and named by its field."""
    pod = copy.deepcopy(the_pod(trainer(1)))
    assert violations(pod) == []
    apply, expected = BREAKAGES[breakage]
    apply(pod)
    found = violations(pod)
    assert found and any(expected in message for message in found), found


def test_the_checker_flags_an_apparmor_annotation_that_turns_it_off() -> None:
    pod = the_pod(trainer(1))
    assert violations(pod, {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"})
    assert violations(pod, {"container.apparmor.security.beta.kubernetes.io/trainer": "runtime/default"}) == []


def test_the_checker_takes_pod_level_settings_for_every_container() -> None:
    """runAsNonRoot and seccomp may sit on the pod alone (the documented rule is "pod or container")."""
    container = {"name": "c", "image": "i",
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [container], "volumes": [{"name": "cfg", "configMap": {"name": "x"}}]}
    assert violations(pod) == []
    pod["securityContext"] = {}
    assert len(violations(pod)) == 2


# On the API server: what it stores, and the pods the controllers make.


def _namespace(envtest: Envtest) -> str:
    """A fresh namespace with the service accounts SETTINGS names."""
    from kubernetes import client

    core: Any = client.CoreV1Api(envtest.api)  # Any: the client's typed models are not used here
    name = f"pss-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    for account in ("trainer", "predictor"):
        core.create_namespaced_service_account(name, {"metadata": {"name": account}})
    return name


@pytest.mark.envtest
def test_the_pods_the_controllers_make_from_them_pass_too(envtest: Envtest) -> None:
    """kube-controller-manager turns the Job and the Deployment into Pods: the API server keeps every
    security field (1.20 knows them all), and the stored Pods pass the checker."""
    from kubernetes import client

    core: Any = client.CoreV1Api(envtest.api)
    batch: Any = client.BatchV1Api(envtest.api)
    apps: Any = client.AppsV1Api(envtest.api)
    namespace = _namespace(envtest)
    try:
        batch.create_namespaced_job(namespace, trainer(1))
        apps.create_namespaced_deployment(namespace, deployment())

        def pods() -> list[dict[str, Any]] | None:
            found = [envtest.api.sanitize_for_serialization(p) for p in core.list_namespaced_pod(namespace).items]
            return found if len(found) == 2 else None

        for pod in eventually(pods, timeout=90, message="the Job's and the Deployment's pods"):
            name, spec = pod["metadata"]["name"], pod["spec"]
            assert violations(spec, pod["metadata"].get("annotations") or {}) == [], name
            assert spec["automountServiceAccountToken"] is False, name
            mounts = [m["mountPath"] for _, c in containers(spec) for m in c.get("volumeMounts") or []]
            assert not [m for m in mounts if "serviceaccount" in m], f"{name}: a token was mounted"
    finally:
        core.delete_namespace(namespace)


@pytest.mark.envtest
def test_kserves_own_schema_keeps_every_security_field(envtest: Envtest) -> None:
    """A schema that pruned a field would store a predictor that fails the profile (and that the
    operator would patch on every reconcile): a server-side dry run shows what it keeps."""
    from kubernetes import client

    from galley.testing.envtest import apply_crds
    from galley.testing.kserve import inference_service_crd

    crd = inference_service_crd()
    apply_crds(envtest.api, [crd])
    extensions: Any = client.ApiextensionsV1Api(envtest.api)
    objects: Any = client.CustomObjectsApi(envtest.api)
    namespace = _namespace(envtest)
    try:
        desired = inference_service()
        stored = objects.create_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace,
                                                         "inferenceservices", desired, dry_run="All")
        assert builders.holds(stored["spec"], desired["spec"]), stored["spec"]
        assert violations(stored["spec"]["predictor"]) == []
    finally:
        client.CoreV1Api(envtest.api).delete_namespace(namespace)
        extensions.delete_custom_resource_definition(crd["metadata"]["name"])
        eventually(lambda: not any(c.metadata.name == crd["metadata"]["name"]
                                   for c in extensions.list_custom_resource_definition().items))
