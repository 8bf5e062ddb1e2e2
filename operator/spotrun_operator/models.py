"""The ResumableTrainingJob API: pydantic models of spec and status, the single source.

``crd.py`` turns these models into the CRD's OpenAPI schema; the reconciler parses every
object it reads into ``JobSpec`` / ``JobStatus``. Descriptions here are what
``kubectl explain`` prints. Condition reasons are constants next to the types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .deadline import RESTART_READINGS

GROUP = "spotrun.dev"
VERSION = "v1alpha1"
KIND = "ResumableTrainingJob"
PLURAL = "resumabletrainingjobs"
SINGULAR = "resumabletrainingjob"
SHORT_NAME = "rtj"

# Condition types.
COND_RUNNING = "Running"
COND_PREEMPTED = "Preempted"
COND_SUSPENDED = "Suspended"
COND_SUCCEEDED = "Succeeded"
COND_FAILED = "Failed"

# Condition / Event reasons (CamelCase, as Kubernetes does).
REASON_CREATED = "AttemptCreated"
REASON_STARTED = "AttemptRunning"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_PREEMPTED = "Preempted"
REASON_RESTORING = "Restoring"
REASON_FAILED_ATTEMPT = "AttemptFailed"
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
REASON_MAX_PREEMPTIONS = "MaxPreemptionsExceeded"
REASON_COMPLETED = "Completed"
REASON_SUSPENDED = "Suspended"
REASON_RESUMED = "Resumed"
REASON_ON_DEMAND = "FallbackToOnDemand"
REASON_PENDING_TIMEOUT = "PendingTimeout"
REASON_INTERRUPTION = "InterruptionNotice"
REASON_WARM_START = "WarmStart"  # the next attempt starts while the preempted one saves
REASON_DRAINED = "PreemptedAttemptEnded"  # a warm-started attempt's old pod ended
REASON_DEADLINE = "DeadlineExceeded"
REASON_INVALID = "InvalidSpec"
REASON_CPU_FALLBACK = "CPUFallback"  # no node offers the GPUs: the attempt runs on CPU
REASON_TEMPLATE_CHANGED = "TemplateChanged"  # spec.template edited: the next attempt runs it
COND_POD_REFUSED = "PodRefused"  # the API refused a pod the operator creates
COND_STORAGE_CONFLICT = "StorageConflict"  # another live job's storage overlaps this one's
REASON_POD_REFUSED = "PodRefused"
REASON_POD_CREATED = "PodCreated"
REASON_STORAGE_OVERLAP = "StorageOverlap"
REASON_STORAGE_FREE = "StorageFree"
COND_STORAGE = "StorageReachable"  # False while the attempt's sidecar cannot read the storage
REASON_STORAGE_UNREACHABLE = "StorageUnreachable"
REASON_STORAGE_REACHABLE = "StorageReachable"
REASON_AVOIDING_ZONE = "AvoidingZone"  # the next attempt prefers other zones / node pools
REASON_NODE_LABEL = "NodeLabelIgnored"  # a node's zone / pool label is no label value
REASON_GANG = "Gang"  # a gang attempt's size, and which rank ended it
REASON_GANG_STOPPING = "GangStopping"  # one rank ended: the others are stopped
REASON_SERVICE_REFUSED = "ServiceRefused"  # the API refused a gang's headless Service
REASON_GANG_SHRUNK = "GangShrunk"  # nodes.min < max: the next attempt runs on fewer nodes
REASON_DEADLINE_CAPACITY = "DeadlineCapacity"  # spec.deadline moved the job to spot / on-demand
MAX_AVOIDED = 16  # status.avoiding keeps the newest this many places

# Names the operator gives what it adds to a job's pods: a template may not use them.
SIDECAR = "spotrun-sidecar"
VOLUME = "spotrun-checkpoints"
# ... and with the operator's --sidecar-image (injection.py): the init container that copies
# spotrun-exec, its volume, and where the trainer mounts it.
ENTRYPOINT_CONTAINER = "spotrun-entrypoint"
ENTRYPOINT_VOLUME = "spotrun-bin"
ENTRYPOINT_DIR = "/spotrun/bin"
# The job's name is the value of the labels spotrun.dev/job (attempt pods) and
# spotrun.dev/cleanup-of (cleanup pods) and the claim's sub-path: a label value has at most 63
# characters. The longest derived object name, ``<job>-cleanup-<try>`` (or ``<job>-<attempt>``),
# stays far below the 253 of a pod name.
MAX_JOB_NAME = 63

S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def rule(cel: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL ``x-kubernetes-validations`` entry; ``field_path`` is the field it names."""
    out = {"rule": cel, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    return out


NAME_RULE = rule(
    f"self.metadata.name.size() <= {MAX_JOB_NAME}",
    f"metadata.name: at most {MAX_JOB_NAME} characters (the operator labels the job's pods "
    f"with it, and a label value has at most {MAX_JOB_NAME}); choose a shorter name",
)


def _reserved(field: str, name: str, what: str) -> dict[str, Any]:
    return rule(
        f"!has(self.{field}) || self.{field}.all(x, !has(x.name) || x.name != '{name}')",
        f"spec.template.spec.{field}: the name {name} is reserved for the operator's {what}; "
        "rename yours",
        f".{field}",
    )


# (field of the pod spec, name the operator gives, what it is)
RESERVED = [
    ("containers", SIDECAR, "sidecar"),
    ("initContainers", SIDECAR, "sidecar"),
    ("volumes", VOLUME, "checkpoint volume"),
    ("containers", ENTRYPOINT_CONTAINER, "entrypoint init container"),
    ("initContainers", ENTRYPOINT_CONTAINER, "entrypoint init container"),
    ("volumes", ENTRYPOINT_VOLUME, "entrypoint volume"),
]
MOUNT_RULE = rule(
    "self.containers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(v, "
    f"!has(v.mountPath) || (v.mountPath != '{ENTRYPOINT_DIR}' && "
    f"!v.mountPath.startsWith('{ENTRYPOINT_DIR}/'))))",
    f"spec.template.spec.containers: the mount path {ENTRYPOINT_DIR} is reserved for the "
    "operator's entrypoint volume (spotrun-exec); mount yours elsewhere",
    ".containers",
)
RESERVED_RULES = [_reserved(*r) for r in RESERVED]
TEMPLATE_RULES = [*RESERVED_RULES, MOUNT_RULE]
NO_REQUIREMENTS = (
    "a node selector term needs a non-empty matchExpressions or matchFields (an empty term, or "
    "a misspelled key such as matchExpression, would drop out when ANDed with the other side's "
    "terms, and the pod could land on any node); correct or remove it"
)
TERM_RULE = rule(
    "(has(self.matchExpressions) && self.matchExpressions.size() > 0) || "
    "(has(self.matchFields) && self.matchFields.size() > 0)",
    f"spec.spot.nodeSelectorTerms: {NO_REQUIREMENTS}",
)
TRAINER_RULE = rule(
    "!has(self.trainerContainer) || "
    "self.template.spec.containers.exists(c, c.name == self.trainerContainer)",
    "spec.trainerContainer must name one of spec.template.spec.containers; set it to the "
    "trainer's name or leave it out (the first container)",
    ".trainerContainer",
)


PORTS_RULE = rule(
    "(has(self.checkpoint.sidecarPort) ? self.checkpoint.sidecarPort : 8471) + "
    "(has(self.nodes) && has(self.nodes.max) ? self.nodes.max : 1) <= 65536",
    "spec.checkpoint.sidecarPort + spec.nodes.max - 1 must be a port (<= 65535): each rank of "
    "a gang has its sidecar on sidecarPort + rank; lower sidecarPort",
    ".checkpoint.sidecarPort",
)


MULTI_RANK = (
    "((has(self.nodes) && has(self.nodes.max) && self.nodes.max > 1) || "
    "(has(self.procsPerNode) && self.procsPerNode > 1))"
)
GANG_INTERVAL_RULE = rule(
    f"!has(self.checkpoint.intervalSeconds) || !{MULTI_RANK}",
    "spec.checkpoint.intervalSeconds cannot be used with several ranks (nodes.max > 1 or "
    "procsPerNode > 1): each rank's clock would pick another step to save, and the trainer "
    "refuses it; use spec.checkpoint.intervalSteps",
    ".checkpoint.intervalSeconds",
)
GANG_PVC_RULE = rule(
    "!has(self.checkpoint.storage.pvc) || "
    "!(has(self.nodes) && has(self.nodes.max) && self.nodes.max > 1)",
    "spec.checkpoint.storage.pvc cannot be used with nodes.max > 1: every pod of a gang would "
    "mount the claim (a ReadWriteOnce claim holds them all to one node, where one pod per node "
    "never places: the gang would pend forever) and a claim shared across nodes is not "
    "supported; keep a gang's checkpoints in S3 (checkpoint.storage.uri)",
    ".checkpoint.storage.pvc",
)


def has_requirements(term: Any) -> bool:
    """``TERM_RULE`` in Python: a node selector term that selects something."""
    return isinstance(term, dict) and any(
        isinstance(term.get(k), list) and term[k] for k in ("matchExpressions", "matchFields")
    )


def _mounts_entrypoint_dir(container: Any) -> bool:
    mounts = container.get("volumeMounts") if isinstance(container, dict) else None
    return any(
        isinstance(v, dict)
        and isinstance(path := v.get("mountPath"), str)
        and (path == ENTRYPOINT_DIR or path.startswith(ENTRYPOINT_DIR + "/"))
        for v in mounts or []
    )


def _required_terms(pod: dict[str, Any]) -> list[Any]:
    """The pod spec's required node-affinity terms (``[]`` when it has none)."""
    node = (pod.get("affinity") or {}).get("nodeAffinity") or {}
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    return terms if isinstance(terms, list) else []


def name_problem(name: str) -> str | None:
    """``NAME_RULE`` in Python, for a job stored before the CRD had the rule."""
    return NAME_RULE["message"] if len(name) > MAX_JOB_NAME else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretRef(_Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="Name of a Secret in the job's namespace holding AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY. Only the pod reads it; the operator never does.",
    )


class PvcRef(_Model):
    claimName: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="A PersistentVolumeClaim (ReadWriteMany, e.g. NFS) mounted at the "
        "checkpoint path; the sidecar then has nothing to sync.",
    )


class Storage(_Model):
    uri: str | None = Field(
        default=None,
        pattern=S3_URI_PATTERN,
        max_length=1024,
        description="Where checkpoints live: s3://bucket/prefix. Exactly one of uri and pvc.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        max_length=1024,
        description="S3 endpoint URL (http(s)://host:port) for S3-compatible servers; "
        "empty means AWS.",
    )
    secretRef: SecretRef | None = Field(
        default=None, description="Credentials for S3 (never put keys in the spec)."
    )
    pvc: PvcRef | None = Field(
        default=None,
        description="A PersistentVolumeClaim instead of S3. Exactly one of uri and pvc.",
    )


class KeepBest(_Model):
    metric: str = Field(min_length=1, max_length=63, description="Metric name to rank by.")
    mode: Literal["max", "min"] = Field(default="max", description="max or min is best.")


class CheckpointSpec(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.storage.uri) != has(self.storage.pvc)",
                    "message": "checkpoint.storage needs exactly one of uri (s3://...) or pvc",
                },
                {
                    "rule": "!has(self.storage.pvc) || !has(self.storage.secretRef)",
                    "message": "checkpoint.storage.secretRef only applies to S3 (uri), not pvc",
                },
            ]
        },
    )
    storage: Storage = Field(description="Where checkpoints are kept across attempts.")
    path: str = Field(
        default="/spotrun/checkpoints",
        pattern=r"^/.*",
        max_length=1024,
        description="Absolute path of the shared checkpoint volume inside the pod "
        "(SPOTRUN_CHECKPOINT_DIR).",
    )
    intervalSteps: int | None = Field(
        default=None, ge=1, description="Save every N steps (passed to the trainer)."
    )
    intervalSeconds: int | None = Field(
        default=None,
        ge=1,
        description="Save every N seconds (passed to the trainer); a job of one rank only "
        "(with several, each rank's clock would pick another step: use intervalSteps).",
    )
    keep: int = Field(default=3, ge=1, le=1000, description="Keep the newest N checkpoints.")
    keepBest: KeepBest | None = Field(
        default=None, description="Also keep the best checkpoint by a metric."
    )
    sidecarImage: str | None = Field(
        default=None,
        min_length=1,
        description="Image of the spotrun sidecar; default: the trainer container's image.",
    )
    sidecarPort: int = Field(
        default=8471,
        ge=1024,
        le=65535,
        description="Port of the sidecar's HTTP probes and of its /status (the newest durable "
        "checkpoint, which the operator reads for status.progress).",
    )
    deleteOnJobDeletion: bool = Field(
        default=False,
        description="Delete the checkpoints when the job is deleted: the job then carries the "
        "finalizer spotrun.dev/checkpoint-cleanup, and its deletion runs a one-shot pod "
        "(`spotrun purge`, with the sidecar's image and credentials) that deletes the job's "
        "checkpoints under the storage prefix (or in the job's own sub-path of the claim). A "
        "cleanup pod the API refuses is tried 3 times (5 s, 10 s apart); then the job goes and "
        "a Warning Event says the checkpoints were NOT deleted and why. false: checkpoints stay.",
    )


class SpotSpec(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.fallbackToOnDemandAfter) || "
                    "self.fallbackToOnDemandAfter <= self.maxPreemptions",
                    "message": "spot.fallbackToOnDemandAfter must not exceed spot.maxPreemptions",
                }
            ]
        },
    )
    enabled: bool = Field(default=True, description="Run on spot nodes (false: on-demand).")
    nodeSelectorTerms: list[dict[str, Any]] | None = Field(
        default=None,
        description="Node affinity terms (ORed) that select spot nodes; default: the spot "
        "labels of Karpenter, GKE, AKS and EKS.",
        json_schema_extra={
            "maxItems": 64,
            "items": {
                "type": "object",
                "description": "A core/v1 NodeSelectorTerm: a non-empty matchExpressions or "
                "matchFields.",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    key: {
                        "type": "array",
                        "description": f"{what} (core/v1 NodeSelectorRequirement), ANDed.",
                        "items": {
                            "type": "object",
                            "description": "key, operator (In, NotIn, Exists, DoesNotExist, "
                            "Gt, Lt) and values.",
                            "x-kubernetes-preserve-unknown-fields": True,
                        },
                    }
                    for key, what in (
                        ("matchExpressions", "Requirements on the node's labels"),
                        ("matchFields", "Requirements on the node's fields"),
                    )
                },
                "x-kubernetes-validations": [TERM_RULE],
            },
        },
    )

    @model_validator(mode="after")
    def _terms_select(self) -> SpotSpec:
        """``TERM_RULE`` in Python, for a job stored before the CRD had it."""
        for i, term in enumerate(self.nodeSelectorTerms or []):
            if not has_requirements(term):
                raise ValueError(f"spec.spot.nodeSelectorTerms[{i}]: {NO_REQUIREMENTS}")
        return self

    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        description="Tolerations for spot taints; default: the GKE and AKS spot taints.",
        json_schema_extra={
            "items": {
                "type": "object",
                "description": "A core/v1 Toleration.",
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    )
    maxPreemptions: int = Field(
        default=20, ge=0, le=10000, description="Fail the job after more preemptions than this."
    )
    fallbackToOnDemandAfter: int | None = Field(
        default=None,
        ge=1,
        description="After N preemptions in a row, the next attempt runs on on-demand nodes.",
    )
    pendingTimeoutSeconds: int | None = Field(
        default=None,
        ge=1,
        description="A pod Pending this long for want of spot capacity is replaced by one "
        "on on-demand nodes.",
    )
    backoffSeconds: float = Field(
        default=1.0, ge=0, le=600, description="Wait before the attempt after a preemption."
    )
    avoidReclaimedSeconds: int = Field(
        default=1800,
        ge=0,
        le=604800,
        description="After a preemption, the next attempts prefer nodes outside the zone "
        "(topology.kubernetes.io/zone) and node pool (the first of "
        "cloud.google.com/gke-nodepool, eks.amazonaws.com/nodegroup, karpenter.sh/nodepool, "
        "kubernetes.azure.com/agentpool) the preempted attempt ran in, for this many seconds: "
        "a preferred node affinity added to the template's own, never a requirement (where "
        "only reclaimed places have room, the attempt runs there). A pool or zone the job's "
        "required node terms pin (e.g. nodeSelectorTerms karpenter.sh/nodepool In [p]) is not "
        "preferred away from: no node it may use could meet that. 0: no preference.",
    )
    warmStart: bool = Field(
        default=True,
        description="When the platform deletes the running attempt's pod with notice "
        "(DisruptionTarget, or its node tainted for interruption), create the next attempt's "
        "pod at once instead of after the old one ended: its trainer starts while the old one "
        "saves, and its sidecar restores only after the old attempt's final save "
        "(false: the next pod once the old one ended).",
    )


class GpuSpec(_Model):
    count: int = Field(default=0, ge=0, le=64, description="GPUs for the trainer container.")
    fallback: Literal["none", "cpu"] = Field(
        default="none",
        description="cpu: where no node offers GPUs, run on CPU (SPOTRUN_DEVICE=cpu); "
        "none: wait for a GPU.",
    )
    resourceName: str = Field(
        default="nvidia.com/gpu", min_length=1, description="Extended resource to request."
    )


NODES_RULE = rule(
    "!has(self.min) || self.min <= self.max",
    "spec.nodes.min must not exceed spec.nodes.max; lower min or raise max",
)
MAX_NODES = 1000


class NodesSpec(_Model):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"x-kubernetes-validations": [NODES_RULE]}
    )
    max: int = Field(
        default=1,
        ge=1,
        le=MAX_NODES,
        description="Nodes (pods) of an attempt. 1: one pod <job>-<attempt>, as without this "
        "field. More: a gang of pods <job>-<attempt>-<rank>, one per node (required pod "
        "anti-affinity on kubernetes.io/hostname), created together, with torchrun's static "
        "rendezvous in their env (PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, "
        "PET_MASTER_ADDR, PET_MASTER_PORT, MASTER_ADDR, MASTER_PORT; "
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT = terminationGracePeriodSeconds, so that torchrun "
        "does not SIGKILL a saving worker after its own 30 s) and a headless Service "
        "named after the job; a preempted or failed pod ends the whole attempt. An edit "
        "applies from the next attempt.",
    )
    min: int | None = Field(
        default=None,
        ge=1,
        le=MAX_NODES,
        description="The fewest nodes an attempt may run on (default: max). Every attempt "
        "asks for max nodes; with min < max, when only some of its pods can be scheduled "
        "(at least min) for shrinkAfterSeconds, it is replaced by an attempt of as many nodes "
        "as were scheduled, which restores the newest checkpoint saved at the other world "
        "size (the data order continues globally; a checkpoint sharded with shards= restores "
        "only at its own world size: keep min = max for such a job). The next restart asks "
        "for max again. Fewer than min scheduled: the attempt waits (spot.pendingTimeoutSeconds "
        "applies).",
    )
    shrinkAfterSeconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="With min < max: how long an attempt waits for all its pods to be "
        "scheduled before it is replaced by one on the nodes that could be had (see min). "
        "Leave a node autoscaler (Karpenter, cluster-autoscaler) the time to bring a node up: "
        "its pods are unschedulable meanwhile.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> NodesSpec:
        """``NODES_RULE`` in Python, for a job stored before the CRD had it."""
        if self.min is not None and self.min > self.max:
            raise ValueError(NODES_RULE["message"])
        return self

    @property
    def least(self) -> int:
        return self.max if self.min is None else self.min


class CostSpec(_Model):
    spotHourly: float | None = Field(
        default=None, ge=0, description="Price of a spot node per hour (any currency)."
    )
    onDemandHourly: float | None = Field(
        default=None, ge=0, description="Price of an on-demand node per hour (same currency)."
    )


_NAME_SCHEMA = {"type": "string", "maxLength": 63, "description": "Name (a DNS label)."}


def _named_list(description: str) -> dict[str, Any]:
    """A list of objects with a name (the only field the CRD's rules read)."""
    return {
        "type": "array",
        "maxItems": 256,
        "description": description,
        "items": {
            "type": "object",
            "description": description,
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"name": _NAME_SCHEMA},
        },
    }


TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Pod template (like a Job's) holding the trainer container.",
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["spec"],
    "properties": {
        "metadata": {
            "type": "object",
            "description": "Labels and annotations for the pods.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "spec": {
            "type": "object",
            "description": "Pod spec; the first container (or trainerContainer) is the trainer.",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 64,
                    "description": "The containers; one of them is the trainer.",
                    "items": {
                        "type": "object",
                        "description": "A container (core/v1 Container).",
                        "x-kubernetes-preserve-unknown-fields": True,
                        "required": ["name", "image"],
                        "properties": {
                            "name": _NAME_SCHEMA,
                            "image": {"type": "string", "description": "Container image."},
                            "volumeMounts": {
                                "type": "array",
                                "maxItems": 128,
                                "description": "Volume mounts (core/v1 VolumeMount).",
                                "items": {
                                    "type": "object",
                                    "description": "A volume mount.",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                    "properties": {
                                        "mountPath": {
                                            "type": "string",
                                            "maxLength": 1024,
                                            "description": "Where it is mounted.",
                                        }
                                    },
                                },
                            },
                        },
                    },
                },
                "initContainers": _named_list("Init containers (core/v1 Container)."),
                "volumes": _named_list("Volumes (core/v1 Volume)."),
            },
            "x-kubernetes-validations": TEMPLATE_RULES,
        },
    },
}


class DisruptionSpec(_Model):
    doNotDisrupt: bool = Field(
        default=True,
        description='Annotate attempt pods karpenter.sh/do-not-disrupt: "true" so Karpenter does '
        "not consolidate, drift or expire their node while they train: a voluntary move is "
        "not a spot interruption and would cost a restart. Spot interruptions still end the "
        "pod. false: no annotation (Karpenter may move the pod; each move counts as a "
        "preemption). An annotation the template sets itself is kept as it is.",
    )


DEADLINE_ONE_OF = rule(
    "has(self.finishBy) != has(self.withinSeconds)",
    "spec.deadline needs exactly one of finishBy (an RFC 3339 time) or withinSeconds (from "
    "the job's start); set one, not both",
)
DEFAULT_RESTART_SECONDS = 120


class DeadlineSpec(_Model):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"x-kubernetes-validations": [DEADLINE_ONE_OF]}
    )
    finishBy: str | None = Field(
        default=None,
        max_length=64,
        description="When the job must be done (RFC 3339, e.g. 2026-12-24T18:00:00Z). "
        "Exactly one of finishBy and withinSeconds.",
        json_schema_extra={"format": "date-time"},
    )
    withinSeconds: int | None = Field(
        default=None,
        ge=1,
        le=31_536_000,
        description="The job must be done this many seconds after it started "
        "(status.startTime). Exactly one of finishBy and withinSeconds.",
    )
    totalSteps: int = Field(
        ge=1,
        le=2**53,  # exact in float64: helm renders integers through it
        description="The job's whole work in the trainer's steps (the step its checkpoints "
        "report): the operator compares the newest durable step with it.",
    )
    marginSeconds: int = Field(
        default=0,
        ge=0,
        le=31_536_000,
        description="Seconds kept free before the deadline: the job goes to on-demand when "
        "on-demand from now would leave no more than this.",
    )
    restartSeconds: int = Field(
        default=DEFAULT_RESTART_SECONDS,
        ge=0,
        le=86_400,
        description="What one restart costs (a new pod, its restore), in seconds, until the "
        "operator has measured one: the rule counts one restart to go to on-demand and two to "
        "leave it. From the first restart measured (status.deadline.restartSeconds: an "
        "attempt's pod binding to a node to its first new checkpoint, less the steps trained) "
        "the measured cost is used instead, higher or lower; to plan with more room, set "
        "marginSeconds.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> DeadlineSpec:
        """The CRD's rules in Python, for a job stored before the CRD had them."""
        if (self.finishBy is None) == (self.withinSeconds is None):
            raise ValueError(DEADLINE_ONE_OF["message"])
        if self.finishBy is not None and parse_time(self.finishBy) is None:
            raise ValueError(
                f"spec.deadline.finishBy {self.finishBy!r} is not an RFC 3339 time with a "
                "zone (e.g. 2026-12-24T18:00:00Z)"
            )
        return self


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with a zone (``Z`` or an offset); None for anything else."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


class JobSpec(_Model):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "x-kubernetes-validations": [
                TRAINER_RULE, PORTS_RULE, GANG_INTERVAL_RULE, GANG_PVC_RULE
            ]
        },
    )
    template: dict[str, Any] = Field(
        description=TEMPLATE_SCHEMA["description"], json_schema_extra=TEMPLATE_SCHEMA
    )
    trainerContainer: str | None = Field(
        default=None,
        max_length=63,
        description="Name of the trainer container; default: the first.",
    )
    checkpoint: CheckpointSpec = Field(description="Checkpoint storage and cadence.")
    spot: SpotSpec = Field(
        default_factory=SpotSpec,
        json_schema_extra={"default": {}},
        description="Spot placement and limits.",
    )
    gpu: GpuSpec = Field(
        default_factory=GpuSpec,
        json_schema_extra={"default": {}},
        description="GPU request and CPU fallback.",
    )
    backoffLimit: int = Field(
        default=3, ge=0, le=1000, description="Failures (not preemptions) retried before Failed."
    )
    suspend: bool = Field(
        default=False, description="true: save and stop the pod; false again: resume."
    )
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, description="Fail the job when it has run longer than this."
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the job (and its pods) this many seconds after completionTime.",
    )
    terminationGracePeriodSeconds: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="Seconds the trainer has to save after SIGTERM (SPOTRUN_GRACE_SECONDS).",
    )
    signalForwarding: bool = Field(
        default=True,
        description="Run the trainer's command under `spotrun exec --` so SIGTERM reaches it.",
    )
    nodes: NodesSpec = Field(
        default_factory=NodesSpec,
        json_schema_extra={"default": {}},
        description="How many nodes (pods) each attempt runs on: a gang when max > 1.",
    )
    procsPerNode: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Processes (ranks) per pod: torchrun's --nproc-per-node (PET_NPROC_PER_NODE "
        "and SPOTRUN_NPROC_PER_NODE, set when nodes.max > 1 or procsPerNode > 1).",
    )
    disruption: DisruptionSpec = Field(
        default_factory=DisruptionSpec,
        json_schema_extra={"default": {}},
        description="Voluntary disruptions (Karpenter consolidation) of the attempt pods.",
    )
    cost: CostSpec = Field(
        default_factory=CostSpec,
        json_schema_extra={"default": {}},
        description="Prices for the savings estimate.",
    )
    deadline: DeadlineSpec | None = Field(
        default=None,
        description="Finish by a time at the least cost (deadline-aware placement, uniform "
        "progress): spot while the job can still finish on on-demand in time; on-demand when "
        "it must, or when it is behind the straight line from 0 to totalSteps at the deadline "
        "while spot is short (its attempt pends on spot, or no spot node is free); back to "
        "spot (the on-demand attempt saves and the next runs on spot) once spot is free and "
        "the slack covers two restarts. Decided once the step time is measured (two "
        "checkpoints of one attempt); until then spot.* alone decides. Beside it, "
        "spot.fallbackToOnDemandAfter and spot.pendingTimeoutSeconds still move an attempt to "
        "on-demand, and the deadline rule may bring the job back to spot: the deadline wins. "
        "Single-pod jobs move while running or pending; a gang's capacity is decided when its "
        "attempt starts. status.deadline says the projected finish and why.",
    )

    @model_validator(mode="after")
    def _admissible(self) -> JobSpec:
        """The CRD's rules in Python, for a job stored before the CRD had them."""
        pod = self.template.get("spec") or {}
        for (field, reserved, _), found in zip(RESERVED, RESERVED_RULES, strict=True):
            if any(isinstance(x, dict) and x.get("name") == reserved for x in pod.get(field) or []):
                raise ValueError(found["message"])
        if any(_mounts_entrypoint_dir(c) for c in pod.get("containers") or []):
            raise ValueError(MOUNT_RULE["message"])
        for i, term in enumerate(_required_terms(pod)):
            if not has_requirements(term):
                raise ValueError(
                    "spec.template.spec.affinity.nodeAffinity."
                    f"requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]: "
                    f"{NO_REQUIREMENTS}"
                )
        if self.checkpoint.sidecarPort + self.nodes.max > 65536:
            raise ValueError(PORTS_RULE["message"])
        ranks = self.nodes.max > 1 or self.procsPerNode > 1
        if self.checkpoint.intervalSeconds is not None and ranks:
            raise ValueError(GANG_INTERVAL_RULE["message"])
        if self.checkpoint.storage.pvc is not None and self.nodes.max > 1:
            raise ValueError(GANG_PVC_RULE["message"])
        names = [c.get("name") for c in pod.get("containers") or [] if isinstance(c, dict)]
        if self.trainerContainer is not None and self.trainerContainer not in names:
            raise ValueError(TRAINER_RULE["message"])
        return self


class Condition(_Model):
    """A Kubernetes-style condition."""

    type: str = Field(description="Running, Preempted, Suspended, Succeeded or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable details.")
    lastTransitionTime: str = Field(description="When status last changed (RFC 3339).")
    observedGeneration: int = Field(default=0, description="The spec generation seen.")


class CheckpointRef(_Model):
    step: int | None = Field(default=None, description="Global step of the checkpoint.")
    epoch: int | None = Field(default=None, description="Epoch of the checkpoint.")
    uri: str | None = Field(default=None, description="Where it is stored.")
    time: str | None = Field(default=None, description="When it became durable (RFC 3339).")
    finalSaved: bool | None = Field(
        default=None, description="Whether the attempt's final save (on SIGTERM) made it."
    )


class DrainingAttempt(_Model):
    """An earlier attempt, preempted with notice, whose pod still saves (warm start)."""

    attempt: int = Field(description="The attempt whose pod still saves.")
    pod: str = Field(description="Its pod.")
    until: str = Field(
        description="Its pod's deletionTimestamp (RFC 3339): when its grace period ends."
    )


class Placement(_Model):
    """Where an attempt's pod ran: its node and the node's zone and pool labels."""

    attempt: int = Field(description="The attempt whose pod ran (or runs) there.")
    node: str = Field(max_length=253, description="The node's name.")
    zone: str | None = Field(
        default=None,
        max_length=63,
        description="The node's topology.kubernetes.io/zone label (absent: none, or not a "
        "valid label value).",
    )
    poolLabel: str | None = Field(
        default=None,
        max_length=63,
        description="Which node-pool label the node carries: cloud.google.com/gke-nodepool, "
        "eks.amazonaws.com/nodegroup, karpenter.sh/nodepool or kubernetes.azure.com/agentpool "
        "(the first present).",
    )
    pool: str | None = Field(
        default=None, max_length=63, description="The value of that node-pool label."
    )


class AvoidedPlace(Placement):
    """A zone / node pool where an attempt was preempted: attempts prefer other places until
    ``until``."""

    reclaimedAt: str = Field(description="When the preemption was seen (RFC 3339).")
    until: str = Field(
        description="Until when attempts prefer other places: reclaimedAt plus "
        "spec.spot.avoidReclaimedSeconds (RFC 3339)."
    )


class RankPod(_Model):
    """One pod of a gang: its rank, name, node and phase."""

    rank: int = Field(description="Its node rank (SPOTRUN_NODE_RANK, PET_NODE_RANK).")
    pod: str = Field(description="The pod, <job>-<attempt>-<rank>.")
    node: str | None = Field(default=None, description="The node it runs on, once scheduled.")
    phase: str | None = Field(default=None, description="Its phase (absent: not seen).")


class GangEnding(_Model):
    """How the current gang attempt ends, decided when its first rank ended (or was
    preempted): the operator then stops the other ranks, whose own ends do not change it."""

    outcome: Literal["Succeeded", "Preempted", "Failed", "Suspended", "TemplateChanged"] = Field(
        description="The attempt's outcome once every pod has ended."
    )
    why: str = Field(max_length=1024, description="What ended it, naming the rank(s).")
    message: str = Field(
        default="", max_length=1024, description="The failed rank's last words, if any."
    )
    exitCode: int | None = Field(default=None, description="The deciding rank's exit code.")
    ranks: list[int] = Field(
        default_factory=list,
        description="The rank(s) that decided it.",
        json_schema_extra={"items": {"type": "integer", "description": "A node rank."}},
    )


class GangStatus(_Model):
    """The current (or last) attempt's gang."""

    attempt: int = Field(description="The attempt.")
    nodes: str = Field(description="Nodes running / wanted, e.g. 1/2 (printer column Nodes).")
    nodesWanted: int = Field(description="Pods (nodes) of the attempt.")
    nodesRunning: int = Field(description="Its pods in phase Running.")
    worldSize: int = Field(description="nodesWanted x procsPerNode: torchrun's world size.")
    pods: list[RankPod] = Field(default_factory=list, description="Each rank's pod.")
    ending: GangEnding | None = Field(
        default=None, description="Set when the attempt's end is decided (its pods then stop)."
    )


class GangAttempt(_Model):
    """How an earlier (or the current) attempt of a gang ran."""

    attempt: int = Field(description="The attempt.")
    nodes: int = Field(description="Its pods (nodes).")
    worldSize: int = Field(description="Its world size (nodes x procsPerNode).")
    why: str | None = Field(
        default=None,
        max_length=1024,
        description="Why it has that many nodes: spec.nodes.max, fewer (only so many could be "
        "scheduled, spec.nodes.min < max) or grown back to max after a smaller attempt.",
    )
    outcome: str | None = Field(
        default=None,
        description="Succeeded, Preempted, Failed, Shrunk (fewer pods could be scheduled: "
        "the next attempt runs on fewer nodes), PendingTimeout, ... (absent: running).",
    )
    detail: str | None = Field(
        default=None, max_length=1024, description="Which rank ended it, and how."
    )


class DeadlineSample(_Model):
    """A durable checkpoint seen while an attempt ran: the step time is measured from two."""

    attempt: int = Field(description="The attempt that saved it.")
    step: int = Field(description="Its step.")
    time: str = Field(description="When it became durable (RFC 3339).")


class DeadlineResume(_Model):
    """The checkpoint a restarted attempt resumed from, kept until its restart is measured."""

    attempt: int = Field(description="The restarted attempt.")
    step: int = Field(
        description="The step it resumed from: the newest durable checkpoint when it started, "
        "or the one its sidecar reports restoring."
    )
    time: str | None = Field(
        default=None, description="When that checkpoint became durable (RFC 3339)."
    )


class DeadlineStatus(_Model):
    """spec.deadline's view: where the job stands against its deadline and why the current
    attempt runs on spot or on-demand."""

    finishBy: str = Field(description="The deadline (RFC 3339), resolved from spec.deadline.")
    capacity: Literal["spot", "on-demand"] | None = Field(
        default=None, description="What the rule chose for the current attempt."
    )
    reason: str = Field(
        default="",
        max_length=1024,
        description="Why the current attempt runs on its capacity: the rule's words when the "
        "attempt started or was moved (or why the rule could not decide then).",
    )
    reasonAttempt: int | None = Field(
        default=None,
        description="The attempt reason was given for (a move decides the next attempt's).",
    )
    assessment: str | None = Field(
        default=None,
        max_length=1024,
        description="The rule's latest words as the attempt runs or pends (on track, behind, "
        "waiting for spot...), or why it cannot decide (step time not measured, a progress "
        "value ignored).",
    )
    projectedFinish: str | None = Field(
        default=None,
        description="When the job would finish on on-demand from now (one restart, then the "
        "remaining steps at the measured step time): the safe bound (RFC 3339).",
    )
    slackSeconds: float | None = Field(
        default=None, description="Deadline minus projectedFinish (negative: late)."
    )
    stepSeconds: float | None = Field(
        default=None, description="Measured seconds per step (two checkpoints of one attempt)."
    )
    sample: DeadlineSample | None = Field(
        default=None, description="The first checkpoint seen in the measuring attempt."
    )
    restartSeconds: float | None = Field(
        default=None,
        description="The measured cost of one restart, which the rule uses in place of "
        "spec.deadline.restartSeconds: the largest of restartReadings (absent: no restart "
        "measured yet).",
    )
    restartReadings: list[float] | None = Field(
        default=None,
        max_length=RESTART_READINGS,
        description=f"The newest restarts measured (at most {RESTART_READINGS}, newest last), "
        "in seconds: from a restarted attempt's pod binding to a node (or, when later, the "
        "time the checkpoint it restored became durable) to its first new durable checkpoint, "
        "less the steps trained since that checkpoint at stepSeconds.",
        json_schema_extra={"items": {"type": "number", "description": "Seconds."}},
    )
    resumed: DeadlineResume | None = Field(
        default=None,
        description="The current attempt's restart, while it is not measured yet: where it "
        "resumed from (absent once measured, or refused, with the reason in assessment).",
    )
    moving: int | None = Field(
        default=None,
        description="The attempt the rule stopped to move the job (it saves; its end is "
        "neither a preemption nor a failure).",
    )


MAX_GANG_HISTORY = 20


Phase = Literal["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]


class JobStatus(_Model):
    phase: Phase = Field(default="Pending", description="One-word summary of the conditions.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Kubernetes-style conditions."
    )
    observedGeneration: int = Field(default=0, description="The spec generation last acted on.")
    attempt: int = Field(default=0, description="Number of the current (or last) attempt.")
    templateGeneration: int | None = Field(
        default=None,
        description="The metadata.generation of the job when the current (or last) attempt's "
        "pod was built (its annotation spotrun.dev/generation says the same). Behind "
        "observedGeneration after any edit of the spec, not only of spec.template, until the "
        "next attempt starts; only an edit of spec.template restarts a running attempt.",
    )
    activePod: str | None = Field(default=None, description="Pod of the current attempt.")
    preemptions: int = Field(default=0, description="Attempts ended by the platform.")
    consecutivePreemptions: int = Field(default=0, description="Preemptions in a row.")
    failures: int = Field(default=0, description="Attempts ended by the trainer's own error.")
    podRefusals: int = Field(
        default=0,
        description="API refusals in a row of the current attempt's pod (condition PodRefused); "
        "each waits longer before the next try (5 s doubling, at most 5 min).",
    )
    cleanupRefusals: int = Field(
        default=0,
        description="API refusals of the checkpoint-cleanup pod of a deleted job.",
    )
    onDemand: bool = Field(default=False, description="The current attempt targets on-demand.")
    notBefore: str | None = Field(
        default=None, description="The next attempt starts no earlier (backoff, RFC 3339)."
    )
    lastCheckpoint: CheckpointRef | None = Field(
        default=None,
        description="The newest durable checkpoint known: from the running attempt's sidecar "
        "(/status) and from each attempt's end (the sidecar's termination message).",
    )
    lastExitCode: int | None = Field(default=None, description="Trainer exit code, last attempt.")
    progress: str | None = Field(
        default=None,
        description="Progress of the newest durable checkpoint, e.g. 'step 450 (epoch 3), loss "
        "0.123'; updated while the attempt runs.",
    )
    startTime: str | None = Field(default=None, description="When the first attempt started.")
    completionTime: str | None = Field(default=None, description="When the job finished.")
    draining: list[DrainingAttempt] | None = Field(
        default=None,
        description="Earlier attempts preempted with notice (warm start) whose pods still "
        "save; each one's end is folded into this status once (its final checkpoint, its "
        "pod seconds), then its pod is released.",
    )
    placement: Placement | None = Field(
        default=None,
        description="Where the current attempt's pod runs, recorded when it is first seen on "
        "its node (the node may be gone by the time the attempt's end is seen).",
    )
    avoiding: list[AvoidedPlace] | None = Field(
        default=None,
        max_length=MAX_AVOIDED,
        description="Zones / node pools reclaimed within spec.spot.avoidReclaimedSeconds, "
        "newest last: the next attempts prefer nodes outside them (preferred node "
        "affinity; a more recent preemption weighs more). Event AvoidingZone says it.",
    )
    gang: GangStatus | None = Field(
        default=None, description="The current (or last) attempt's gang (spec.nodes.max > 1)."
    )
    gangNodes: int | None = Field(
        default=None,
        description="The nodes the next gang attempt asks for: set when only that many of the "
        "last attempt's pods could be scheduled (spec.nodes.min < max); absent: "
        "spec.nodes.max. Cleared when that attempt is made.",
    )
    gangHistory: list[GangAttempt] | None = Field(
        default=None,
        max_length=MAX_GANG_HISTORY,
        description=f"The world size and end of each gang attempt, newest last (at most "
        f"{MAX_GANG_HISTORY}).",
    )
    deadline: DeadlineStatus | None = Field(
        default=None, description="spec.deadline: projected finish, capacity and why."
    )
    spotSeconds: float = Field(default=0, description="Pod seconds on spot nodes.")
    onDemandSeconds: float = Field(default=0, description="Pod seconds on on-demand nodes.")
    estimatedSavings: float | None = Field(
        default=None, description="Estimated savings vs all-on-demand (cost currency)."
    )
