"""What pod runs attempt N of a job: pure functions from the job to a Pod manifest (a dict)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from spotrun.podenv import PREVIOUS_SKEW_SECONDS, PodEnv, name_of, sidecar_user_variables

from . import gang, injection
from .affinity import REQUIRED, merged
from .models import GROUP, KIND, VERSION, JobSpec, JobStatus
from .models import SIDECAR as SIDECAR  # re-exported: names the operator reserves
from .models import VOLUME as VOLUME

LABEL_JOB = "spotrun.dev/job"
LABEL_ATTEMPT = "spotrun.dev/attempt"
LABEL_CAPACITY = "spotrun.dev/capacity"
FINALIZER = "spotrun.dev/outcome"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"  # Karpenter leaves the pod's node alone
STORAGE_ENV = (name_of("storage_uri"), "AWS_")  # prefixes of the variables that reach S3


def hardened() -> dict[str, Any]:
    """The securityContext of the containers the operator adds (the sidecar, the cleanup pod):
    what Pod Security ``restricted`` asks of a container; runAsNonRoot and seccompProfile come
    from the template's pod securityContext."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


# Spot node labels of Karpenter, GKE, AKS and EKS: any one of them selects a spot node.
SPOT_LABELS: tuple[tuple[str, str], ...] = (
    ("karpenter.sh/capacity-type", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
)
SPOT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {
        "key": "kubernetes.azure.com/scalesetpriority",
        "operator": "Equal",
        "value": "spot",
        "effect": "NoSchedule",
    },
    {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    },
    {
        "key": "cloud.google.com/gke-preemptible",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    },
)


@dataclass(frozen=True)
class Job:
    """A ResumableTrainingJob as read: identity, parsed spec and status."""

    name: str
    namespace: str
    uid: str
    generation: int
    resource_version: str
    spec: JobSpec
    status: JobStatus
    sidecar_image: str | None = None  # the operator's --sidecar-image (injection.py)


def pod_name(job: str, attempt: int) -> str:
    """Deterministic: one name per attempt, so a retried create conflicts instead of doubling."""
    return f"{job}-{attempt}"


def spot_affinity(terms: list[dict[str, Any]] | None) -> dict[str, Any]:
    default = [
        {"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]} for k, v in SPOT_LABELS
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": copy.deepcopy(terms) if terms else default
            }
        }
    }


def on_demand_affinity() -> dict[str, Any]:
    """Nodes carrying none of the spot labels (NotIn also matches nodes without the label)."""
    expressions = [{"key": k, "operator": "NotIn", "values": [v]} for k, v in SPOT_LABELS]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }


def trainer_index(spec: JobSpec) -> int:
    containers = spec.template["spec"]["containers"]
    if spec.trainerContainer is None:
        return 0
    for i, c in enumerate(containers):
        if c.get("name") == spec.trainerContainer:
            return i
    raise ValueError(
        f"trainerContainer {spec.trainerContainer!r} is not among the template's containers "
        f"({', '.join(str(c.get('name')) for c in containers)})"
    )


@dataclass(frozen=True)
class Rank:
    """Which pod of an attempt: ``rank`` of ``nodes`` (a single pod: rank 0 of 1)."""

    rank: int = 0
    nodes: int = 1

    def sidecar_port(self, spec: JobSpec) -> int:
        """Ranks of a gang may share a network (the process node): one port each."""
        return spec.checkpoint.sidecarPort + self.rank


SINGLE = Rank()


def _gang_fields(spec: JobSpec, where: Rank) -> dict[str, Any]:
    """PodEnv's nnodes, node_rank and procs_per_node: set on a gang's pods and where a pod
    runs several processes; a default job's pod gets none of them."""
    if where.nodes == 1 and spec.procsPerNode == 1:
        return {}
    return {"nnodes": where.nodes, "node_rank": where.rank, "procs_per_node": spec.procsPerNode}


def pod_env(job: Job, attempt: int, device: str, where: Rank = SINGLE) -> PodEnv:
    """What the operator tells every container of the pod (``spotrun.podenv``)."""
    ckpt = job.spec.checkpoint
    best = ckpt.keepBest
    return PodEnv(
        **_gang_fields(job.spec, where),
        job=job.name,
        namespace=job.namespace,
        attempt=attempt,
        checkpoint_dir=ckpt.path,
        device=device,
        grace_seconds=float(job.spec.terminationGracePeriodSeconds),
        keep=ckpt.keep,
        keep_best_metric=best.metric if best else None,
        keep_best_mode=best.mode if best else None,
        sidecar_port=where.sidecar_port(job.spec),
        interval_steps=ckpt.intervalSteps,
        interval_seconds=ckpt.intervalSeconds,
        storage_uri=ckpt.storage.uri,  # None on a PVC: nothing of S3 applies
        **_previous(job, attempt),
    )


def _previous(job: Job, attempt: int) -> dict[str, Any]:
    """Warm start (docs/warm-start.md): the newest earlier attempt whose pod still saves, and
    the latest instant any of them can (deletionTimestamp + ``PREVIOUS_SKEW_SECONDS``): the
    sidecar restores only after that attempt's ended marker, or after that instant. Only S3
    jobs: on a claim the trainer reads the volume the old pod writes."""
    draining = [d for d in job.status.draining or [] if d.attempt < attempt]
    if not draining or job.spec.checkpoint.storage.uri is None:
        return {}
    until = max(datetime.fromisoformat(d.until.replace("Z", "+00:00")) for d in draining)
    return {
        "previous_attempt": max(d.attempt for d in draining),
        "previous_until": until + timedelta(seconds=PREVIOUS_SKEW_SECONDS),
    }


def env_list(env: PodEnv) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in env.to_env().items()]


def contract_env(
    job: Job, attempt: int, device: str, where: Rank = SINGLE
) -> list[dict[str, Any]]:
    """The env contract of DESIGN.md, shared by the trainer and the sidecar: ``pod_env`` and,
    with S3, boto3's own endpoint and the credentials from the Secret."""
    storage = job.spec.checkpoint.storage
    env = env_list(pod_env(job, attempt, device, where))
    if storage.uri is None:
        return env
    if storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": storage.endpoint})
    if storage.secretRef:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append(
                {
                    "name": key,
                    "valueFrom": {"secretKeyRef": {"name": storage.secretRef.name, "key": key}},
                }
            )
    return env


def _merge_env(own: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours first; the user's own variables of the same name win (they come later)."""
    names = {e["name"] for e in own}
    return [e for e in ours if e["name"] not in names] + own


def desired_pod(
    job: Job,
    attempt: int,
    *,
    on_demand: bool,
    gpus_available: bool,
    prefer: list[dict[str, Any]] | None = None,
    rank: Rank | None = None,
) -> dict[str, Any]:
    """The Pod of ``attempt``: the user's template plus the sidecar, volume, env and placement.
    ``prefer``: preferred node-affinity terms added to the template's own (zones.py);
    ``rank``: which pod of a gang (gang.py; None: the attempt's single pod)."""
    where = rank or SINGLE
    spec = job.spec
    template = copy.deepcopy(spec.template)
    pod_spec: dict[str, Any] = template["spec"]
    meta = template.get("metadata") or {}
    index = trainer_index(spec)
    use_gpu = spec.gpu.count > 0 and (gpus_available or spec.gpu.fallback == "none")
    device = "cuda" if use_gpu else "cpu"
    env = contract_env(job, attempt, device, where)
    s3 = spec.checkpoint.storage.uri is not None

    trainer = pod_spec["containers"][index]
    trainer_env = env + (env_list(PodEnv(upload="sidecar")) if s3 else [])
    if rank is not None or spec.procsPerNode > 1:
        port = gang.master_port(trainer)
        rendezvous = gang.torchrun_env(
            job.name, attempt, where.rank, where.nodes, spec.procsPerNode, port,
            spec.terminationGracePeriodSeconds,
        )
        trainer_env += [{"name": k, "value": v} for k, v in rendezvous.items()]
    trainer["env"] = _merge_env(trainer.get("env") or [], trainer_env)
    trainer.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")  # last log lines
    trainer.setdefault("volumeMounts", []).append(checkpoint_mount(job))
    forward = spec.signalForwarding and bool(trainer.get("command"))
    if forward:
        trainer["command"] = injection.trainer_command(trainer["command"], job.sidecar_image)
    if use_gpu:
        resources = trainer.setdefault("resources", {})
        for kind in ("limits", "requests"):  # a quantity is a string (the client rejects 1)
            resources.setdefault(kind, {})[spec.gpu.resourceName] = str(spec.gpu.count)

    pod_spec["initContainers"] = [_sidecar(job, trainer, env, where.sidecar_port(spec))] + (
        pod_spec.get("initContainers") or []
    )
    pod_spec.setdefault("volumes", []).append(checkpoint_volume(spec))
    if forward and job.sidecar_image:
        injection.add_entrypoint(pod_spec, trainer, job.sidecar_image, hardened())

    _quantities_as_strings(pod_spec)
    pod_spec["restartPolicy"] = "Never"
    pod_spec["terminationGracePeriodSeconds"] = spec.terminationGracePeriodSeconds
    if spec.spot.enabled and not on_demand:
        ours = spot_affinity(spec.spot.nodeSelectorTerms)
        tolerations = spec.spot.tolerations or [dict(t) for t in SPOT_TOLERATIONS]
        pod_spec["tolerations"] = (pod_spec.get("tolerations") or []) + copy.deepcopy(tolerations)
    else:
        ours = on_demand_affinity()
    required = ours["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    pod_spec["affinity"] = merged(pod_spec.get("affinity"), required, prefer or [])
    name = pod_name(job.name, attempt)
    ranked: dict[str, str] = {}
    if rank is not None:
        name = gang.pod_name(job.name, attempt, rank.rank)
        ranked = {gang.LABEL_RANK: str(rank.rank)}
        pod_spec["hostname"] = gang.hostname(job.name, attempt, rank.rank)
        pod_spec["subdomain"] = gang.service_name(job.name)
        term = gang.anti_affinity(job.name, attempt, LABEL_JOB, LABEL_ATTEMPT)
        pod_spec["affinity"] = gang.add_anti_affinity(pod_spec["affinity"], term)

    labels = {
        **(meta.get("labels") or {}),
        LABEL_JOB: job.name,
        LABEL_ATTEMPT: str(attempt),
        LABEL_CAPACITY: "on-demand" if on_demand or not spec.spot.enabled else "spot",
        **ranked,
    }
    return pod_manifest(
        name,
        job.namespace,
        labels,
        pod_spec,
        annotations=_annotations(spec, meta.get("annotations") or {}),
        finalizers=[FINALIZER],
        ownerReferences=[_owner(job)],
    )


def _owner(job: Job) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def gang_service(job: Job) -> dict[str, Any]:
    """The headless Service whose name is the gang pods' subdomain, so that
    ``<hostname>.<service>`` resolves to a pod (ready or not: rendezvous comes first);
    owned by the job (deleted with it), shared by all its attempts."""
    trainer = job.spec.template["spec"]["containers"][trainer_index(job.spec)]
    port = gang.master_port(trainer)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": gang.service_name(job.name),
            "namespace": job.namespace,
            "labels": {LABEL_JOB: job.name},
            "ownerReferences": [_owner(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: job.name},
            "ports": [{"name": gang.PORT_NAME, "port": port, "targetPort": port}],
        },
    }


def _annotations(spec: JobSpec, own: dict[str, str]) -> dict[str, str]:
    """The template's annotations, plus karpenter.sh/do-not-disrupt unless the job allows
    voluntary disruption (spec.disruption.doNotDisrupt); the template's own value wins."""
    if not spec.disruption.doNotDisrupt:
        return dict(own)
    return {DO_NOT_DISRUPT: "true", **own}


def pod_manifest(
    name: str, namespace: str, labels: dict[str, str], spec: dict[str, Any], **metadata: Any
) -> dict[str, Any]:
    """A Pod object: its name, namespace and labels, further ``metadata`` fields, its spec."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, **metadata},
        "spec": spec,
    }


def checkpoint_volume(spec: JobSpec) -> dict[str, Any]:
    """The checkpoint volume: an emptyDir the sidecar syncs with S3, or the user's claim."""
    claim = spec.checkpoint.storage.pvc
    if claim is None:
        return {"name": VOLUME, "emptyDir": {}}
    return {"name": VOLUME, "persistentVolumeClaim": {"claimName": claim.claimName}}


def checkpoint_mount(job: Job) -> dict[str, Any]:
    """The checkpoint volume at the checkpoint path. On a claim only the job's own folder
    (``subPath: <job name>``) is mounted: jobs that share a claim never see, prune or purge
    each other's checkpoints (names are unique in a namespace, and so is the claim)."""
    mount = {"name": VOLUME, "mountPath": job.spec.checkpoint.path}
    if job.spec.checkpoint.storage.pvc is not None:
        mount["subPath"] = job.name
    return mount


def _quantities_as_strings(pod_spec: dict[str, Any]) -> None:
    """YAML's ``cpu: 2`` is an int: the API server takes it, the Python client's models refuse
    it (a quantity is a string there), so the pod could never be created."""
    containers = (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or [])
    holders = [c.get("resources") or {} for c in containers] + [pod_spec.get("resources") or {}]
    maps = [h.get(kind) or {} for h in holders for kind in ("limits", "requests")]
    maps.append(pod_spec.get("overhead") or {})
    for quantities in maps:
        for key, value in quantities.items():
            if isinstance(value, (int, float)):
                quantities[key] = str(value)
    for volume in pod_spec.get("volumes") or []:
        empty = volume.get("emptyDir")
        if isinstance(empty, dict) and isinstance(empty.get("sizeLimit"), (int, float)):
            empty["sizeLimit"] = str(empty["sizeLimit"])


def _storage_expectations(job: Job, trainer: dict[str, Any]) -> list[dict[str, Any]]:
    """``SPOTRUN_EXPECTED_STEP``: the step the status says was saved, so a sidecar that cannot
    read the storage waits (and says so) instead of letting the trainer start from scratch;
    and the user's sidecar variables set on the trainer (``SPOTRUN_START_WITHOUT_STORAGE``,
    which overrides that, the restore's patience, the S3 transfer settings)."""
    saved = job.status.lastCheckpoint
    out = env_list(PodEnv(expected_step=saved.step if saved is not None else None))
    theirs = sidecar_user_variables()
    out += [e for e in trainer.get("env") or [] if e["name"] in theirs]
    return copy.deepcopy(out)


def _sidecar(
    job: Job, trainer: dict[str, Any], env: list[dict[str, Any]], port: int
) -> dict[str, Any]:
    """The native sidecar. With S3 it restores (the trainer starts beside it and waits for the
    restore itself, up to SPOTRUN_READY_TIMEOUT) and uploads; on a PVC the volume is
    the durable store, so it runs in report mode: no S3 variables, nothing to restore
    (/startupz answers as soon as it listens), only /status and the termination message of
    the newest checkpoint there."""
    ckpt = job.spec.checkpoint
    report = ckpt.storage.pvc is not None
    if report:  # contract_env holds no S3 variables then
        env = [*env, *env_list(PodEnv(sidecar_mode="report"))]
    env = [*env, *_storage_expectations(job, trainer)]

    def probe(path: str, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": port},
            "periodSeconds": 1,
            "failureThreshold": failures,
        }

    sidecar = {
        "name": SIDECAR,
        "image": ckpt.sidecarImage or job.sidecar_image or trainer["image"],
        "command": ["spotrun", "sidecar"],
        "restartPolicy": "Always",
        "env": env,
        "volumeMounts": [checkpoint_mount(job)],
        "readinessProbe": probe("/readyz", 3),
        "terminationMessagePolicy": "File",
        "securityContext": hardened(),
    }
    # With S3 no startupProbe: the kubelet starts the trainer as soon as the sidecar runs, so
    # python and torch load while the sidecar starts and restores; Checkpointer.restore()
    # waits for the restore (.spotrun-ready, spotrun.readiness). Where pods share one network
    # (the process node) a warm start's new sidecar cannot listen until the old one is gone:
    # a probe would hold its trainer back until then.
    if report:
        sidecar["startupProbe"] = probe("/startupz", 30)
    return sidecar
