"""The kind cluster of hack/kind/ behind ``hack/cluster`` and ``hack/demo`` (their default).

Thin on purpose: the hack/kind scripts do the work and print their progress and one-line
failures (``[kind:<step>] ...``) on stderr, which passes through; this module runs them,
parses what they print on stdout (``export A=1 B=2`` lines of ``up`` and ``s3 env``,
``NAME=REF`` lines of ``images``, the references ``registry push`` prints) and keeps what
``env`` needs in the cluster's state dir (``<cache>/kind/cluster/``, which hack/kind/down
removes). The decisions are the pure functions at the top.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import config

KIND_DIR = config.HACK_DIR / "kind"
IMAGES = ("operator", "sidecar", "trainer")  # what `up` builds and pushes, in this order
# the kind tier's shape: <name>-worker on-demand, <name>-worker2 spot
DEFAULT_SPOT, DEFAULT_ON_DEMAND = 1, 1
STATE_FILE = "hack-cluster.json"
# the process node's S3 names first, in its order, then the pods' endpoint
S3_ORDER = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "SPOTRUN_TEST_BUCKET",
    "SPOTRUN_POD_S3_ENDPOINT",
)


class KindError(RuntimeError):
    """A hack/kind script failed (it said why on stderr), or no cluster of ours is up."""


# --- pure ------------------------------------------------------------------------------------


def backend(kind_flag: bool, process_flag: bool, setting: str | None) -> str:
    """``kind`` (hack/kind's cluster: the default) or ``process`` (the process node) from
    ``--kind``/``--process`` or else SPOTRUN_CLUSTER."""
    if kind_flag and process_flag:
        raise ValueError("--kind and --process contradict each other: give one")
    if kind_flag or process_flag:
        return "kind" if kind_flag else "process"
    value = (setting or "").strip() or "kind"
    if value not in ("process", "kind"):
        raise ValueError(f"SPOTRUN_CLUSTER={setting}: set it to kind or process, or leave it unset "
                         "(kind)")
    return value


def cluster_name(environ: Mapping[str, str]) -> str:
    """The cluster's name as hack/kind/cluster.sh reads it."""
    return environ.get("SPOTRUN_KIND_CLUSTER") or "spotrun"


def cluster_state_dir(kind_state: Path, name: str) -> Path:
    """hack/kind/cluster.sh's CLUSTER_STATE: one folder per cluster, so that a second cluster
    never overwrites the first one's kubeconfig or removes it at its `down`."""
    return kind_state / ("cluster" if name == "spotrun" else f"cluster-{name}")


def parse_exports(text: str) -> dict[str, str]:
    """Every ``export A=1 B=2`` line of a script's stdout as one dict; other lines are skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        for word in shlex.split(line)[1:]:
            name, sep, value = word.partition("=")
            if not sep or not name.isidentifier():
                raise ValueError(f"not NAME=VALUE: {word!r} in {line!r}")
            found[name] = value
    return found


def parse_assignments(text: str) -> dict[str, str]:
    """``NAME=VALUE`` lines (hack/kind/images prints ``operator=spotrun.local/operator:TAG``)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.isidentifier() and value:
            found[name] = value
    return found


def parse_pushed(text: str) -> dict[str, str]:
    """{NAME: reference} of the ``HOST/spotrun/NAME:TAG`` lines hack/kind/registry push prints."""
    found: dict[str, str] = {}
    for line in text.split():
        repository, sep, tag = line.rpartition(":")
        if sep and tag and "/spotrun/" in repository:
            found[repository.rsplit("/", 1)[1]] = line
    return found


def require(found: Mapping[str, str], names: Iterable[str], source: str) -> None:
    missing = [n for n in names if not found.get(n)]
    if missing:
        raise KindError(f"{source} printed no {', '.join(missing)} (stdout had: {sorted(found)})")


def up_args(spot: int, on_demand: int) -> list[str]:
    """hack/kind/up's options for M on-demand and N spot workers."""
    if spot < 0 or on_demand < 0:
        raise ValueError(f"node counts cannot be negative (--spot {spot} --on-demand {on_demand})")
    return ["--on-demand", str(on_demand), "--spot", str(spot)]


def preempt_args(node: str, notice: float, abrupt: bool, shutdown: bool = False) -> list[str]:
    """hack/kind/preempt's arguments: whole seconds of notice, an abrupt loss (no notice), or a
    power-off the kubelet's graceful node shutdown handles (GKE's way; no taint either)."""
    if abrupt and shutdown:
        raise ValueError("--abrupt and --shutdown are two different endings: give one")
    if abrupt or shutdown:
        flag = "--abrupt" if abrupt else "--shutdown"
        if notice:
            raise ValueError(f"{flag} gives no notice: leave out --notice")
        return [node, flag]
    if notice < 0 or notice != int(notice):
        raise ValueError(f"--notice {notice:g}: a kind node takes whole seconds of notice")
    return [node, "--notice", str(int(notice))]


def image_env(pushed: Mapping[str, str]) -> dict[str, str]:
    """SPOTRUN_OPERATOR_IMAGE, SPOTRUN_SIDECAR_IMAGE, SPOTRUN_TRAINER_IMAGE: what pods name."""
    return {f"SPOTRUN_{name.upper()}_IMAGE": pushed[name] for name in IMAGES if name in pushed}


def helm_image_values(pushed: Mapping[str, str]) -> list[str]:
    """The chart's image values for the pushed images (explicit: never a coincidence of tags)."""
    repository, _, tag = pushed["operator"].rpartition(":")
    return [
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", f"sidecar.image={pushed['sidecar']}",
    ]


def env_pairs(
    cluster: Mapping[str, str], s3: Mapping[str, str], pushed: Mapping[str, str]
) -> list[tuple[str, str]]:
    """What ``hack/cluster env`` exports after KUBECONFIG and PATH: DOCKER_HOST, the S3
    names the process node's env has too (from ``hack/kind/s3 env``), the pods' S3 endpoint,
    then any other name s3 env printed, then the pushed images."""
    pairs = [(k, cluster[k]) for k in ("DOCKER_HOST",) if k in cluster]
    pairs += [(k, s3[k]) for k in S3_ORDER if k in s3]
    pairs += [(k, v) for k, v in s3.items() if k not in S3_ORDER]
    return pairs + list(image_env(pushed).items())


@dataclass(frozen=True)
class Running:
    """What of the kind setup answered before a command started (the demo removes the rest)."""

    engine: bool
    cluster: bool
    registry: bool
    s3: bool


def running_from(names: Iterable[str], engine: bool, name: str) -> Running:
    """Running from the names of the running containers (``docker ps``)."""
    up = set(names)
    return Running(
        engine, f"{name}-control-plane" in up, f"{name}-registry" in up, f"{name}-s3" in up
    )


# --- the cluster as `up` left it --------------------------------------------------------------


@dataclass(frozen=True)
class KindCluster:
    exports: dict[str, str]  # KUBECONFIG, DOCKER_HOST (hack/kind/up's export line)
    images: dict[str, str]  # {operator|sidecar|trainer: the pushed reference pods name}

    @property
    def kubeconfig(self) -> str:
        return self.exports["KUBECONFIG"]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.exports}


def kind_state_dir() -> Path:
    """hack/kind's state dir (lib.sh: SPOTRUN_KIND_STATE, else <cache>/kind)."""
    return Path(os.environ.get("SPOTRUN_KIND_STATE") or config.cache_dir() / "kind")


def kubeconfig_path() -> Path:
    """Where hack/kind/up writes the cluster's kubeconfig (never ~/.kube/config)."""
    return cluster_state_dir(kind_state_dir(), cluster_name(os.environ)) / "kubeconfig"


def state_path() -> Path:
    return cluster_state_dir(kind_state_dir(), cluster_name(os.environ)) / STATE_FILE


def save(cluster: KindCluster) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exports": cluster.exports, "images": cluster.images}, indent=1))


def load() -> KindCluster:
    path = state_path()
    if not path.exists():
        raise KindError(f"no kind cluster of hack/cluster ({path} is missing): "
                        "run `hack/cluster up` first")
    saved = json.loads(path.read_text())
    return KindCluster(dict(saved["exports"]), dict(saved["images"]))


# --- the scripts -------------------------------------------------------------------------------


def script(
    name: str, *args: str, env: Mapping[str, str] | None = None, quiet: bool = False
) -> str:
    """Run hack/kind/NAME ARGS; its stdout. Its stderr passes through (quiet: dropped)."""
    done = subprocess.run(
        [str(KIND_DIR / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if done.returncode != 0:
        why = "" if quiet else ": its [kind:...] lines above say why"
        raise KindError(f"hack/kind/{' '.join([name, *args])} failed (exit {done.returncode}){why}")
    return done.stdout


def up(spot: int, on_demand: int) -> KindCluster:
    """hack/kind/up (a cluster that is up is reused), registry up, s3 up, images, registry push."""
    exports = parse_exports(script("up", *up_args(spot, on_demand)))
    require(exports, ("KUBECONFIG", "DOCKER_HOST"), "hack/kind/up")
    env = {**os.environ, **exports}
    script("registry", "up", env=env)
    script("s3", "up", env=env)
    built = parse_assignments(script("images", *IMAGES, env=env))
    require(built, IMAGES, "hack/kind/images")
    pushed = parse_pushed(script("registry", "push", *(built[n] for n in IMAGES), env=env))
    require(pushed, IMAGES, "hack/kind/registry push")
    cluster = KindCluster(exports, {n: pushed[n] for n in IMAGES})
    save(cluster)
    return cluster


def s3_env(cluster: KindCluster) -> dict[str, str]:
    """hack/kind/s3 env: the host's and the pods' S3 endpoints, credentials, bucket."""
    found = parse_exports(script("s3", "env", env=cluster.env()))
    require(found, ("AWS_ENDPOINT_URL_S3", "SPOTRUN_POD_S3_ENDPOINT"), "hack/kind/s3 env")
    return found


def preempt(node: str, notice: float, abrupt: bool, env: Mapping[str, str] | None = None,
            shutdown: bool = False) -> None:
    script("preempt", *preempt_args(node, notice, abrupt, shutdown), env=env)


def add_node(node: str, env: Mapping[str, str] | None = None) -> None:
    script("add-node", node, env=env)


def down(engine: bool = False) -> None:
    script("down", *(["--engine"] if engine else []))


def probe() -> Running:
    """What answers now: an engine (any), and the cluster's node, registry and S3 containers."""
    name = cluster_name(os.environ)
    try:
        engine = parse_exports(script("docker-engine", "env", quiet=True))
    except KindError:
        return Running(False, False, False, False)
    listed = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"],
        capture_output=True, text=True, env={**os.environ, **engine}, check=False,
    )
    return running_from(listed.stdout.split() if listed.returncode == 0 else [], True, name)
