"""The three Galley resources: TrainingJob, Model and OnlineService (group galley.dev, v1alpha1).

These pydantic models are the source of truth: ``galley crds`` generates the CRDs from them,
``galley validate`` checks manifests with them, and the operator and the embedded backend read
specs and write status through them. ``spec`` belongs to the user, ``status`` to Galley.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from galley.api import hyperparameters as hp
from galley.api.fields import (
    MAX_NODES,
    Duration,
    Hostname,
    ObjectName,
    OnlineServiceName,
    SplitText,
    StorageUri,
    TrainingJobName,
    checked,
)
from galley.api.flavors import FlavorCatalogue, default_catalogue
from galley.api.meta import ApiModel, Condition, ObjectMeta

# ----------------------------------------------------------------------------------------------
# Shared pieces


def _check_flavor(name: str, info: ValidationInfo) -> str:
    catalogue: FlavorCatalogue = (info.context or {}).get("flavors") or default_catalogue()
    if name not in catalogue:
        raise ValueError(f"unknown flavor {name!r}; known flavors: {', '.join(catalogue.names())}")
    return name


FlavorName = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(_check_flavor)]


class StorageSpec(ApiModel):
    """Where storage credentials come from: never inline."""

    secret_ref: ObjectName | None = None
    """Name of a Secret in the same namespace holding AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    optionally AWS_ENDPOINT_URL and AWS_DEFAULT_REGION."""


class Location(ApiModel):
    """A storage location."""

    uri: StorageUri
    """s3://bucket/prefix/ or a local path."""


class OutputLocation(Location):
    """Where a training job writes its package, checkpoints and progress."""

    resume_from_other_jobs: bool = False
    """Continue from checkpoints another TrainingJob left here; by default such a job stops with
    OutputInUse instead of silently taking over someone else's training."""


class Resource(ApiModel):
    """Fields every Galley resource has."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()

    api_version: Literal["galley.dev/v1alpha1"] = "galley.dev/v1alpha1"
    kind: str
    metadata: ObjectMeta

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, value: str) -> str:
        if value != cls.KIND:
            raise ValueError(f"expected {cls.KIND!r}, got {value!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_manifest(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ----------------------------------------------------------------------------------------------
# Usage: what a TrainingJob or OnlineService has held while it ran


class Usage(ApiModel):
    """What a resource held while it ran, summed over all its runs: what a bill is made of.

    Kept by :mod:`galley.control.usage` (both backends): the totals count up to ``countedUntil``
    while the resource runs, so a restarted operator continues from status and no period is
    counted twice.
    """

    running_seconds: int = 0
    """Seconds spent running: a trainer seen running, a predictor Ready."""
    core_seconds: float = 0.0
    """CPU cores held (the flavor's, times nodes or replicas) times the seconds they were held."""
    gpu_seconds: float = 0.0
    """GPUs held times the seconds they were held."""
    counted_until: datetime | None = None
    """Set while it runs: the totals count up to this time, and what runs after it is added at the
    next accounting (at least once a minute while reconciles come). Unset while it does not run."""
    cores: float | None = None
    """The cores it holds while it runs; unset when it does not."""
    gpus: int | None = None
    """The GPUs it holds while it runs; unset when it does not."""
    summary: str | None = None
    """The totals in words, as the USAGE column shows them: ``1h5m, 1.1 GPU-h``."""


# ----------------------------------------------------------------------------------------------
# TrainingJob

AlgorithmName = Literal["resnet50", "resnet18", "mobilenet_v2"]


class AlgorithmSpec(ApiModel):
    """The preset algorithm and its starting weights."""

    name: AlgorithmName = "resnet50"
    """Network architecture from torchvision, with a new head sized to the data set's classes."""
    pretrained: bool = True
    """Start from ImageNet weights; false trains from random weights."""
    weights: StorageUri | None = None
    """A torchvision state_dict (.pth or .safetensors) to start from; default: torch's cache."""


class DatasetSpec(ApiModel):
    """A labelled image data set."""

    uri: StorageUri
    """s3://bucket/prefix/ or a local folder: one folder per class, or a .manifest file."""
    format: Literal["auto", "folders", "manifest"] = "auto"
    """How labels are given; auto picks manifest when the URI ends in .manifest."""
    split: SplitText = "train:0.8,eval:0.2"
    """Fractions for training and evaluation when the data set does not say (stratified, seeded)."""


def _hyperparameter_field(h: hp.Hyperparameter) -> Any:
    def validate(value: str) -> str:
        hp.parse_one(h.name, value)
        return value

    return Annotated[
        str | None,
        AfterValidator(lambda v: v if v is None else validate(v)),
        Field(None, description=f"{h.description} Default {h.default!r}.", json_schema_extra={"pattern": h.pattern}),
    ]


class Hyperparameters(ApiModel):
    """Hyperparameters as strings, the way cloud ML platforms take them."""

    model_config = ApiModel.model_config | {"alias_generator": None, "extra": "allow"}

    learning_rate_strategy: _hyperparameter_field(hp.BY_NAME["learning_rate_strategy"])  # type: ignore[valid-type]
    max_epochs: _hyperparameter_field(hp.BY_NAME["max_epochs"])  # type: ignore[valid-type]
    batch_size: _hyperparameter_field(hp.BY_NAME["batch_size"])  # type: ignore[valid-type]
    eval_batch_size: _hyperparameter_field(hp.BY_NAME["eval_batch_size"])  # type: ignore[valid-type]
    image_size: _hyperparameter_field(hp.BY_NAME["image_size"])  # type: ignore[valid-type]
    evaluate_every_n_epochs: _hyperparameter_field(hp.BY_NAME["evaluate_every_n_epochs"])  # type: ignore[valid-type]
    seed: _hyperparameter_field(hp.BY_NAME["seed"])  # type: ignore[valid-type]
    num_workers: _hyperparameter_field(hp.BY_NAME["num_workers"])  # type: ignore[valid-type]
    optimizer: _hyperparameter_field(hp.BY_NAME["optimizer"])  # type: ignore[valid-type]
    momentum: _hyperparameter_field(hp.BY_NAME["momentum"])  # type: ignore[valid-type]
    weight_decay: _hyperparameter_field(hp.BY_NAME["weight_decay"])  # type: ignore[valid-type]
    label_smoothing: _hyperparameter_field(hp.BY_NAME["label_smoothing"])  # type: ignore[valid-type]
    warmup_epochs: _hyperparameter_field(hp.BY_NAME["warmup_epochs"])  # type: ignore[valid-type]
    backbone_lr_multiplier: _hyperparameter_field(hp.BY_NAME["backbone_lr_multiplier"])  # type: ignore[valid-type]
    augment: _hyperparameter_field(hp.BY_NAME["augment"])  # type: ignore[valid-type]
    cache_images: _hyperparameter_field(hp.BY_NAME["cache_images"])  # type: ignore[valid-type]
    max_bad_fraction: _hyperparameter_field(hp.BY_NAME["max_bad_fraction"])  # type: ignore[valid-type]
    near_duplicates: _hyperparameter_field(hp.BY_NAME["near_duplicates"])  # type: ignore[valid-type]
    near_duplicate_threshold: _hyperparameter_field(hp.BY_NAME["near_duplicate_threshold"])  # type: ignore[valid-type]
    selection: _hyperparameter_field(hp.BY_NAME["selection"])  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _no_unknown_names(self) -> Hyperparameters:
        unknown = sorted(self.model_extra or {})
        if unknown:
            raise ValueError(f"unknown hyperparameter {unknown[0]!r}; known: {', '.join(hp.known_names())}")
        return self

    def as_strings(self) -> dict[str, str]:
        """Only what the user set."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items()}

    def resolved(self) -> hp.Resolved:
        """Typed values with defaults filled in (see :mod:`galley.api.hyperparameters`)."""
        return hp.resolve(self.as_strings())


class ResourcesSpec(ApiModel):
    """The machines a job runs on."""

    flavor: FlavorName = "cpu-2c-8g"
    """A flavor from the catalogue, such as gpu-v100-1 or cpu-2c-8g."""
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    """Number of nodes (pods); more than one trains with distributed data parallel."""


class RunPolicy(ApiModel):
    """Limits on a job's run, as a Kubernetes Job takes them."""

    active_deadline_seconds: int | None = Field(None, ge=1)
    """Fail the job when it runs longer than this."""
    backoff_limit: int = Field(3, ge=0, le=100)
    """Retries before the job is failed; a retried trainer resumes from its last checkpoint."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    """Delete the finished job's pods after this long (the TrainingJob and its output stay)."""


class TrainingJobSpec(ApiModel):
    """What to train, on what, and where the results go."""

    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    dataset: DatasetSpec
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    output: OutputLocation
    """The model package goes to <output>/model/, checkpoints to <output>/checkpoints/."""
    logs: Location | None = None
    """The training log and metrics as JSON lines; default <output>/logs/."""
    storage: StorageSpec = Field(default_factory=StorageSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    run_policy: RunPolicy = Field(default_factory=RunPolicy)


TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


class TrainingMetrics(ApiModel):
    """The latest numbers from the trainer."""

    accuracy: float | None = None
    """Evaluation accuracy of the last evaluated epoch."""
    loss: float | None = None
    """Training loss of the last epoch."""
    images_per_second: float | None = None
    """Training throughput of the last epoch."""


class TrainingJobStatus(ApiModel):
    """What Galley observed of the job."""

    phase: TrainingPhase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    last_handled_reconcile_at: str | None = None
    """The galley.dev/reconcile-requested-at annotation's value once a reconcile has seen it."""
    epoch: int | None = None
    epochs: int | None = None
    metrics: TrainingMetrics | None = None
    model_uri: str | None = None
    """Where the model package is, once written."""
    start_time: datetime | None = None
    """When the trainer was first seen running (time spent waiting for a node is not counted)."""
    completion_time: datetime | None = None
    usage: Usage | None = None
    """Time, cores and GPUs held while the trainer ran, over every attempt; unset until it first runs."""


class TrainingJobMeta(ObjectMeta):
    """A TrainingJob's metadata: its name must leave room for its children's suffixes."""

    name: TrainingJobName


class TrainingJob(Resource):
    """Trains an image classifier with a preset algorithm."""

    KIND: ClassVar[str] = "TrainingJob"
    PLURAL: ClassVar[str] = "trainingjobs"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("tj",)

    kind: str = "TrainingJob"
    metadata: TrainingJobMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None

    @property
    def logs_uri(self) -> str:
        if self.spec.logs is not None:
            return self.spec.logs.uri
        return self.spec.output.uri.rstrip("/") + "/logs/"


# ----------------------------------------------------------------------------------------------
# Model


class ModelSource(ApiModel):
    """Where the model package comes from: exactly one of trainingJob and uri."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"oneOf": [{"required": ["trainingJob"]}, {"required": ["uri"]}]}
    }

    training_job: ObjectName | None = None
    """A TrainingJob in the same namespace; the model is ready when it has succeeded."""
    uri: StorageUri | None = None
    """A model package folder (holding config.json)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.training_job is None) == (self.uri is None):
            raise ValueError("set exactly one of trainingJob and uri")
        return self


Version = checked(lambda v: None, r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,62}$", max_length=63)


class ModelSpec(ApiModel):
    """A trained model package, by training job or location."""

    source: ModelSource
    version: Version = "0.0.1"  # type: ignore[valid-type]
    """A version string shown next to the model (for example 0.0.1)."""
    storage: StorageSpec = Field(default_factory=StorageSpec)


class ModelStatus(ApiModel):
    """What Galley found in the package."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    last_handled_reconcile_at: str | None = None
    """The galley.dev/reconcile-requested-at annotation's value once a reconcile has seen it."""
    uri: str | None = None
    """The package folder."""
    digest: str | None = None
    """``sha256:`` of the package's config.json (which holds every other file's SHA-256): what was imported."""
    imported_from: str | None = Field(None, max_length=253)
    """The TrainingJob the package was imported from: the Model keeps the package while
    ``spec.source`` still names it, whatever else in its spec changes."""
    labels: list[str] = Field(default_factory=list)
    """Class labels in class-index order."""
    metrics: dict[str, float] = Field(default_factory=dict)
    algorithm: str | None = None


class Model(Resource):
    """A model package ready to serve."""

    KIND: ClassVar[str] = "Model"
    PLURAL: ClassVar[str] = "models"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()

    kind: str = "Model"
    spec: ModelSpec
    status: ModelStatus | None = None


# ----------------------------------------------------------------------------------------------
# OnlineService


class AutoStop(ApiModel):
    """Stop the service by itself, so nothing keeps billing: at a fixed time, when unused, or both."""

    model_config = ApiModel.model_config | {"json_schema_extra": {"minProperties": 1}}

    after: Duration | None = None
    """Stop this long after it becomes ready: 90s, 30m, 1h (at most 7d)."""
    idle: Duration | None = None
    """Stop when no prediction has arrived for this long (health checks and page views do not count)."""

    @model_validator(mode="after")
    def _at_least_one(self) -> AutoStop:
        if self.after is None and self.idle is None:
            raise ValueError("set after, idle or both")
        return self


class IngressTls(ApiModel):
    """Serve HTTPS with a certificate kept in a Secret of the service's namespace."""

    secret_name: ObjectName
    """A kubernetes.io/tls Secret holding the host's certificate and key."""


class IngressExposure(ApiModel):
    """A networking.k8s.io/v1 Ingress in front of the predictor."""

    host: Hostname
    """The DNS name clients use, e.g. food.example.com (never an IP address); status.url becomes http(s)://<host>/."""
    class_name: str | None = Field(None, min_length=1, max_length=253)
    """The IngressClass (nginx, traefik, ...); the cluster's default class when unset."""
    tls: IngressTls | None = None


class Exposure(ApiModel):
    """How clients outside the cluster reach the service (in-cluster DNS always works)."""

    ingress: IngressExposure | None = None


class OnlineServiceSpec(ApiModel):
    """A model served as a REST API."""

    model: ObjectName
    """A Model in the same namespace."""
    flavor: FlavorName = "cpu-1c-4g"
    replicas: int = Field(1, ge=1, le=100)
    auto_stop: AutoStop | None = None
    """Without it the service runs until stopped."""
    stopped: bool = False
    """True stops the service now, keeping its configuration."""
    runtime: Literal["auto", "kserve", "raw"] = "auto"
    """kserve renders an InferenceService, raw a Deployment and Service; auto picks kserve when installed."""
    precision: Literal["auto", "fp32", "int8"] = "auto"
    """auto serves the package's INT8 graph where the trainer kept one (within 1 point of FP32's accuracy)."""
    storage: StorageSpec = Field(default_factory=StorageSpec)
    expose: Exposure | None = None
    """Reach the service from outside the cluster; without it, `galley port-forward` or kubectl's."""


ServicePhase = Literal["Pending", "Running", "Stopped", "Failed"]


class OnlineServiceStatus(ApiModel):
    """What Galley observed of the service."""

    phase: ServicePhase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    last_handled_reconcile_at: str | None = None
    """The galley.dev/reconcile-requested-at annotation's value once a reconcile has seen it."""
    url: str | None = None
    """Where to send requests; GET on it opens the test page."""
    stop_at: datetime | None = None
    """When the service stops by itself (autoStop.after)."""
    last_request_time: datetime | None = None
    """When the predictor last served a prediction, as last read from it (autoStop.idle counts from it)."""
    started_at: datetime | None = None
    """When the current run was started (first rollout or the last start request)."""
    stopped_at: datetime | None = None
    last_start_request: str | None = None
    """The value of the galley.dev/start annotation last acted on."""
    model_uri: str | None = None
    """The model package the running predictor serves (after a rollout completes)."""
    runtime: Literal["kserve", "raw"] | None = None
    """The runtime in use; with runtime: auto it is decided once and changes only with the spec."""
    usage: Usage | None = None
    """Time, cores and GPUs held while the predictor was Ready, over every start; unset until it first is."""


class OnlineServiceMeta(ObjectMeta):
    """An OnlineService's metadata: its name must make a valid Service name with the predictor's suffix."""

    name: OnlineServiceName


class OnlineService(Resource):
    """Serves a Model over HTTP, InferenceService-style, with an automatic stop."""

    KIND: ClassVar[str] = "OnlineService"
    PLURAL: ClassVar[str] = "onlineservices"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("osvc",)

    kind: str = "OnlineService"
    metadata: OnlineServiceMeta
    spec: OnlineServiceSpec
    status: OnlineServiceStatus | None = None


RESOURCES: tuple[type[Resource], ...] = (TrainingJob, Model, OnlineService)
BY_KIND: dict[str, type[Resource]] = {r.KIND: r for r in RESOURCES}
