"""``hack/cluster`` (the default; also --kind or SPOTRUN_CLUSTER=kind): cli.py's commands on
hack/kind's cluster.

up       hack/kind/up --on-demand M --spot N (1 and 1 unless given), registry up, s3 up,
         images (operator sidecar trainer) and registry push of them
env      KUBECONFIG, PATH, DOCKER_HOST, hack/cluster env's S3 names, SPOTRUN_POD_S3_ENDPOINT and
         SPOTRUN_{OPERATOR,SIDECAR,TRAINER}_IMAGE (the pushed references)
status   the engine, the cluster's containers and nodes, the pushed images
preempt  hack/kind/preempt NODE --notice S | --abrupt | --shutdown
add-node hack/kind/add-node NODE
down     hack/kind/down [--engine]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from . import config, kindcluster
from .cli import node_counts, tools_path


def cmd_up(args: argparse.Namespace) -> int:
    if args.s3_only or args.node_grace is not None:
        raise ValueError("--s3-only and --node-grace are the process node's: add --process, or "
                         "leave them out on kind")
    spot, on_demand = node_counts(args.spot, args.on_demand, kind=True)
    name = kindcluster.cluster_name(os.environ)
    print(f"kind cluster {name}: {on_demand} on-demand and {spot} spot worker(s), the registry, "
          "S3 and the operator, sidecar and trainer images (hack/kind/*) ...", flush=True)
    started = time.monotonic()
    cluster = kindcluster.up(spot, on_demand)
    print(f"kind cluster {name} up in {time.monotonic() - started:.0f}s; images: "
          f"{' '.join(cluster.images.values())}")
    print('`eval "$(hack/cluster env)"` to use it; `hack/cluster down` removes it')
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    cluster = kindcluster.load()
    s3 = kindcluster.s3_env(cluster)
    pairs = kindcluster.env_pairs(cluster.exports, s3, cluster.images)
    lines = [f"KUBECONFIG={shlex.quote(cluster.kubeconfig)}", *tools_path()]
    lines += [f"{name}={shlex.quote(value)}" for name, value in pairs]
    for line in lines:
        print(f"export {line}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        print("engine: " + kindcluster.script("docker-engine", "status", quiet=True).strip())
    except kindcluster.KindError:
        print("engine: none answers (hack/cluster up starts one)")
        return 0
    name = kindcluster.cluster_name(os.environ)
    running = kindcluster.probe()
    for what, up in (("cluster", running.cluster), ("registry", running.registry),
                     ("s3", running.s3)):
        print(f"{what:<9} {'running' if up else 'not running'}")
    if running.cluster:
        subprocess.run([str(config.binary("kubectl")), "--kubeconfig",
                        str(kindcluster.kubeconfig_path()), "get", "nodes",
                        "-L", "karpenter.sh/capacity-type"], check=False)
    if kindcluster.state_path().exists():
        for image in kindcluster.load().images.values():
            print(f"image    {image}")
    print(f"cluster {name}, state dir: {kindcluster.state_path().parent}")
    return 0


def cmd_preempt(args: argparse.Namespace) -> int:
    kindcluster.preempt(args.node, args.notice, args.abrupt, shutdown=args.shutdown)
    return 0


def cmd_add_node(args: argparse.Namespace) -> int:
    if not args.target:
        raise ValueError("add-node needs the worker to bring back: "
                         "hack/cluster add-node NODE")
    kindcluster.add_node(args.target)
    print(args.target)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    kindcluster.down(engine=args.engine)
    print("down: the kind cluster, its registry and S3 containers are removed"
          + (", our Docker engine stopped" if args.engine else ""))
    return 0


HANDLERS = {
    "up": cmd_up, "env": cmd_env, "status": cmd_status, "preempt": cmd_preempt,
    "add-node": cmd_add_node, "down": cmd_down,
}


def main(args: argparse.Namespace) -> int:
    try:
        return HANDLERS[args.command](args)
    except ValueError as err:
        print(f"hack/cluster {args.command}: {err}", file=sys.stderr)
        return 2
    except (kindcluster.KindError, config.MissingBinaryError) as err:
        print(f"hack/cluster {args.command}: {err}", file=sys.stderr)
        return 1
