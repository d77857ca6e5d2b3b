"""The pure builders: the Kubernetes objects a resource becomes, field by field (no API server)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from galley.api.flavors import FlavorCatalogue
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.control import reasons
from galley.operator import builders
from galley.operator.observe import observe_trainer
from galley.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(trainer_image="registry.example/trainer:1", predictor_image="registry.example/predictor:1",
                            image_pull_policy="IfNotPresent")


def job(nodes: int, flavor: str = "gpu-v100-8") -> TrainingJob:
    return TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
        "spec": {"algorithm": {"name": "resnet50"}, "dataset": {"uri": "s3://food/data/"},
                 "hyperparameters": {"learning_rate_strategy": "20:0.001"}, "output": {"uri": "s3://food/out/"},
                 "storage": {"secretRef": "s3-credentials"}, "resources": {"flavor": flavor, "nodes": nodes}},
    })


def render(nodes: int, flavor: str = "gpu-v100-8") -> dict[str, Any]:
    catalogue = FlavorCatalogue.from_documents()
    return builders.build_trainer_job(job(nodes, flavor), catalogue[flavor], SETTINGS)


def test_one_node_is_a_plain_job_with_the_flavors_placement() -> None:
    manifest = render(1, "gpu-v100-1")
    spec = manifest["spec"]
    assert "completionMode" not in spec and (spec["completions"], spec["parallelism"]) == (1, 1)
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/trainer:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-V100-SXM2-32GB"}
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert {e["name"] for e in container["env"]} == {"GALLEY_TRAINING_JOB", "PYTHONUNBUFFERED"}
    assert pod["restartPolicy"] == "Never" and "subdomain" not in pod


def test_several_nodes_are_an_indexed_job_whose_ranks_come_from_the_completion_index() -> None:
    spec = render(2, "gpu-v100-1")["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (2, 2)
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["WORLD_SIZE"]["value"] == "2"
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"].endswith("['batch.kubernetes.io/job-completion-index']")
    assert env["MASTER_ADDR"]["value"] == "food-trainer-0.food-workers"
    assert spec["template"]["spec"]["subdomain"] == "food-workers"
    service = builders.build_workers_service(job(2), SETTINGS)
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True


def test_the_trainer_gets_the_jobs_uid_which_its_checkpoints_carry() -> None:
    owned = job(1).model_copy(update={"metadata": job(1).metadata.model_copy(
        update={"uid": "7d4c2f0e-1111-4222-8333-944455556666", "namespace": "food"})})
    payload = json.loads(builders.job_payload(owned))
    assert payload["metadata"] == {"name": "food", "namespace": "food", "uid": "7d4c2f0e-1111-4222-8333-944455556666"}
    assert "status" not in payload


def _failed_job(message: str | None, reason: str = "BackoffLimitExceeded") -> tuple[dict[str, Any], list[Any]]:
    job_object = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason,
                                             "message": "Job has reached the specified backoff limit"}]}}
    terminated = {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-29T06:00:00Z"}
    if message is not None:
        terminated["message"] = message
    container = {"name": "trainer", "state": {"terminated": terminated}}
    pod = {"status": {"phase": "Failed", "containerStatuses": [container]}}
    return job_object, [pod]


def test_a_trainer_that_names_output_in_use_fails_the_job_with_that_reason() -> None:
    state = observe_trainer(*_failed_job("OutputInUse: s3://food/out/checkpoints holds checkpoints of another "
                                         "TrainingJob (job uid:1, epoch 3)"))
    assert (state.failed, state.failure_reason) == (True, reasons.OUTPUT_IN_USE)
    assert state.message.startswith("s3://food/out/checkpoints holds checkpoints of another TrainingJob")


@pytest.mark.parametrize("said", [
    "DatasetInvalid: class '肉夹馍' has no readable training image",
    "WeightsNotFound: no resnet50 weights at s3://food/weights/resnet50.pth",
    "StorageUnavailable: storage: s3://food/ did not answer (timed out)",
    "OutOfMemory: out of memory (CUDA out of memory); choose a flavor with more memory or a smaller batch_size",
    "TrainerError: RuntimeError('boom')",
])
def test_the_trainers_reason_goes_ahead_of_the_jobs_generic_one(said: str) -> None:
    state = observe_trainer(*_failed_job(said))
    reason, message = said.split(": ", 1)
    assert (state.failed, state.failure_reason, state.message) == (True, reason, message)


def test_messages_that_are_not_the_trainers_leave_the_jobs_own_reason() -> None:
    for message in (None, "Traceback (most recent call last): ...", "no colon here"):
        state = observe_trainer(*_failed_job(message))
        assert state.failure_reason == reasons.BACKOFF_LIMIT_EXCEEDED, message
    deadline = observe_trainer(*_failed_job("DatasetInvalid: one class", reason="DeadlineExceeded"))
    assert deadline.failure_reason == reasons.DEADLINE_EXCEEDED  # the deadline, not a retry's last word


def _service_and_model(runtime: str) -> tuple[OnlineService, Model]:
    """A 1-core OnlineService on ``runtime`` and the Ready Model it serves."""
    service = OnlineService.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
        "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "runtime": runtime}})
    model = Model.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
        "spec": {"source": {"uri": "s3://food/out/model/"}},
        "status": {"uri": "s3://food/out/model/", "conditions": []}})
    return service, model


def test_a_kserve_spec_with_webhook_defaults_needs_no_patch_but_a_changed_owned_field_does() -> None:
    service, model = _service_and_model("kserve")
    catalogue = FlavorCatalogue.from_documents()
    desired = builders.build_inference_service(service, model, catalogue["cpu-1c-4g"], SETTINGS, True)["spec"]
    defaulted = copy.deepcopy(desired)  # what KServe's webhook stores: our fields and its own
    container = defaulted["predictor"]["containers"][0]
    container["terminationMessagePolicy"] = "File"
    container["readinessProbe"] = {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1}
    defaulted["predictor"]["minReplicas"] = defaulted["predictor"].get("minReplicas", 1)
    assert builders.holds(defaulted, desired)
    changed = copy.deepcopy(defaulted)
    changed["predictor"]["containers"][0]["image"] = "registry.example/predictor:2"
    assert not builders.holds(changed, desired)
    fewer = copy.deepcopy(defaulted)
    del fewer["predictor"]["containers"][0]["args"]  # someone removed a field we own
    assert not builders.holds(fewer, desired)


def test_a_resource_without_a_secret_gets_the_installs_default_secret_and_endpoint() -> None:
    install = OperatorSettings(trainer_image="t", predictor_image="p", default_storage_secret="team-storage",
                               storage_endpoint="https://s3.internal.example")
    bare = job(1).model_copy(deep=True)
    bare.spec.storage.secret_ref = None
    catalogue = FlavorCatalogue.from_documents()
    container = builders.build_trainer_job(bare, catalogue["gpu-v100-1"], install)["spec"]["template"]["spec"][
        "containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "team-storage"}}]
    assert {"name": "GALLEY_DEFAULT_S3_ENDPOINT", "value": "https://s3.internal.example"} in container["env"], \
        "under its own name: a Secret's AWS_ENDPOINT_URL (envFrom) still wins"
    own = builders.build_trainer_job(job(1), catalogue["gpu-v100-1"], SETTINGS)["spec"]["template"]["spec"][
        "containers"][0]
    assert own["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert not any(e["name"] == "GALLEY_DEFAULT_S3_ENDPOINT" for e in own["env"])


def test_storage_read_for_a_resource_never_borrows_the_processs_own_identity(monkeypatch: Any) -> None:
    from botocore import UNSIGNED

    from galley import storage
    from galley.storage.uris import s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator-own-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-own-secret")
    with storage.using_credentials({}):  # a resource that named no Secret, in an install with no default
        anonymous = s3_client()
    assert anonymous._client_config.signature_version is UNSIGNED
    assert anonymous._request_signer._credentials is None
    with storage.using_credentials({"AWS_ACCESS_KEY_ID": "team", "AWS_SECRET_ACCESS_KEY": "team-secret",
                                    "GALLEY_DEFAULT_S3_ENDPOINT": "https://s3.internal.example"}):
        team = s3_client()
    assert team._request_signer._credentials.access_key == "team"
    assert team.meta.endpoint_url == "https://s3.internal.example"
    assert s3_client()._request_signer._credentials.access_key == "operator-own-key", \
        "outside a resource's read (the trainer, the embedded mode) the environment is used as before"


def test_a_raw_predictor_has_its_whole_download_to_start_before_liveness_counts() -> None:
    service, model = _service_and_model("raw")
    catalogue = FlavorCatalogue.from_documents()
    deployment = builders.build_deployment(service, model, catalogue["cpu-1c-4g"], SETTINGS, True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # ten minutes and more to download
    assert "initialDelaySeconds" not in container["livenessProbe"]  # it counts once the startup probe passed
    assert container["livenessProbe"]["periodSeconds"] * container["livenessProbe"]["failureThreshold"] <= 60


def test_a_permanent_trainer_failure_fails_the_job_at_once_and_an_eviction_is_not_counted() -> None:
    """The Job's podFailurePolicy reads the exit status the trainer gives a failure that will repeat
    (a bad data set here), so a newer API server spends no retries on it."""
    from galley.trainer.failures import classify
    from galley.trainer.preemption import PreemptedError
    from galley.trainer.preparation import TrainingError

    catalogue = FlavorCatalogue.from_documents()
    for nodes in (1, 3):
        spec = builders.build_trainer_job(job(nodes), catalogue["gpu-v100-1"], SETTINGS)["spec"]
        fail, preempted, ignore = spec["podFailurePolicy"]["rules"]
        assert fail["action"] == "FailJob" and fail["onExitCodes"]["containerName"] == "trainer"
        permanent = classify(TrainingError("one class", reasons.DATASET_INVALID)).exit_status
        retryable = classify(TimeoutError("storage")).exit_status
        stopped = classify(PreemptedError("stopped on SIGTERM")).exit_status
        assert permanent in fail["onExitCodes"]["values"] and retryable not in fail["onExitCodes"]["values"]
        # A trainer that checkpointed on SIGTERM is not counted against backoffLimit; a crash is.
        assert preempted["action"] == "Ignore" and preempted["onExitCodes"]["values"] == [stopped]
        assert retryable not in preempted["onExitCodes"]["values"] and stopped != permanent
        assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
        assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == SETTINGS.trainer_grace_seconds >= 60
        assert spec["template"]["spec"]["restartPolicy"] == "Never"  # what podFailurePolicy requires


def _env(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}


def test_a_pod_of_a_several_gpu_flavor_runs_one_rank_per_gpu() -> None:
    """gpu-v100-8 on 2 nodes: a world of 16, 8 per pod. The container is the pod's launcher: it gets
    the node's rank from the completion index and no RANK of its own, and gives each GPU's process
    ``LOCAL_RANK`` and ``RANK = NODE_RANK x 8 + LOCAL_RANK``."""
    spec = render(2, "gpu-v100-8")["spec"]
    env = _env(spec)
    assert (env["WORLD_SIZE"]["value"], env["LOCAL_WORLD_SIZE"]["value"]) == ("16", "8")
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == builders.COMPLETION_INDEX
    assert "RANK" not in env and "LOCAL_RANK" not in env
    assert env["MASTER_ADDR"]["value"] == "food-trainer-0.food-workers"
    assert env["MASTER_PORT"]["value"] == str(SETTINGS.master_port)
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["subdomain"] == "food-workers"
    limits = spec["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8"
    service = builders.build_workers_service(job(2), SETTINGS)
    assert service["metadata"]["name"] == "food-workers"
    assert service["spec"]["ports"][0]["port"] == SETTINGS.master_port


def test_one_pod_of_several_gpus_is_a_plain_job_whose_ranks_meet_on_loopback() -> None:
    spec = render(1, "gpu-v100-8")["spec"]
    env = _env(spec)
    assert (env["WORLD_SIZE"]["value"], env["LOCAL_WORLD_SIZE"]["value"], env["NODE_RANK"]["value"]) == ("8", "8", "0")
    assert env["MASTER_ADDR"]["value"] == "127.0.0.1" and "RANK" not in env
    assert "completionMode" not in spec and "subdomain" not in spec["template"]["spec"]


def test_the_rendered_layout_is_the_one_the_ranks_compute() -> None:
    """What the pod launcher and each GPU's process make of the rendered variables: every global rank
    once, each local rank on its own GPU, over NCCL."""
    from galley.trainer import distributed

    env = _env(render(2, "gpu-v100-8")["spec"])
    seen = []
    for node in (0, 1):
        for local_rank in range(8):
            world = distributed.plan({"WORLD_SIZE": env["WORLD_SIZE"]["value"], "NODE_RANK": str(node),
                                      "LOCAL_WORLD_SIZE": env["LOCAL_WORLD_SIZE"]["value"],
                                      "RANK": str(node * 8 + local_rank), "LOCAL_RANK": str(local_rank)}, gpus=8)
            assert (world.backend, world.device.type, world.device.index) == ("nccl", "cuda", local_rank)
            assert world.node_rank == node
            seen.append(world.rank)
    assert sorted(seen) == list(range(16))


def test_a_preempted_trainer_shows_as_preempted_until_the_next_pod_runs() -> None:
    said = "Preempted: stopped on SIGTERM in epoch 3, after batch 12, with a checkpoint of it"
    terminated = {"exitCode": 4, "reason": "Error", "finishedAt": "2026-11-29T06:00:00Z", "message": said}
    stopped = {"status": {"phase": "Failed", "containerStatuses": [{"name": "trainer",
                                                                    "state": {"terminated": terminated}}]}}
    job_object = {"podFailurePolicy": True, "status": {"startTime": "2026-11-29T05:00:00Z"}}
    state = observe_trainer(job_object, [stopped])
    assert (state.waiting_reason, state.active, state.failed) == (reasons.PREEMPTED, False, False)
    assert "after batch 12" in state.message and state.preemptions_counted is False
    running = {"status": {"phase": "Running"}}
    assert observe_trainer(job_object, [stopped, running]).active
    # Where the API server dropped podFailurePolicy, preemptions spend the backoffLimit: the failure says so.
    failed = {"podFailurePolicy": False, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "backoff limit reached"}]}}
    state = observe_trainer(failed, [stopped])
    assert state.failure_reason == reasons.BACKOFF_LIMIT_EXCEEDED and "preempted" in state.message
    assert state.preemptions_counted is True
