"""``hack/cluster``: up, env, status, preempt, add-node, down on hack/kind's cluster (kindcli.py);
with --process (or SPOTRUN_CLUSTER=process) on the process node instead, the fast tier."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from . import config, controlplane, kindcluster, procs, s3server, state
from .node.handle import ProcessNode, ProcessNodeError

CAPACITY_TYPES = ("spot", "on-demand")


def cmd_up(args: argparse.Namespace, st: Path) -> int:
    needed = ["versitygw"]
    if not args.s3_only:
        needed += ["etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"]
    for name in needed:
        config.binary(name)
    record = state.load(st)
    if s3server.running(st, record.s3):
        print(f"S3 server already running at {record.s3.endpoint if record.s3 else ''}")
    else:
        print("starting the S3 server (versitygw) ...", flush=True)
        s3server.stop(st)
        record.s3 = s3server.start(st)
        state.save(st, record)
        print(f"  S3 ready at {record.s3.endpoint}, bucket {record.s3.bucket}")
    if args.s3_only:
        return 0
    if controlplane.running(st, record.control_plane):
        print("control plane already running; `hack/cluster --process down` first to change "
              "node counts")
    else:
        print("starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager and the "
              "process node ...", flush=True)
        started = time.monotonic()
        record.control_plane = controlplane.start(
            st, args.spot, args.on_demand,
            node_monitor_grace_seconds=20 if args.node_grace is None else args.node_grace,
            progress=lambda message: print(f"  {message}", flush=True),
        )
        state.save(st, record)
        print(f"cluster up in {time.monotonic() - started:.0f}s")
    print(f"logs in {st / 'logs'}; `eval \"$(hack/cluster --process env)\"` to use it")
    return 0


def cmd_env(args: argparse.Namespace, st: Path) -> int:
    record = state.load(st)
    if record.s3 is None and record.control_plane is None:
        print("nothing is up: run `hack/cluster --process up` first", file=sys.stderr)
        return 1
    lines = []
    if record.control_plane is not None:
        lines.append(f"KUBECONFIG={record.control_plane.kubeconfig}")
        lines += tools_path()
    if record.s3 is not None:
        s3 = record.s3
        lines += [
            f"AWS_ENDPOINT_URL_S3={s3.endpoint}",
            f"AWS_ACCESS_KEY_ID={s3.access_key}",
            f"AWS_SECRET_ACCESS_KEY={s3.secret_key}",
            f"AWS_DEFAULT_REGION={s3.region}",
            f"SPOTRUN_TEST_BUCKET={s3.bucket}",
        ]
    for line in lines:
        print(f"export {line}")
    return 0


def tools_path() -> list[str]:
    """``PATH=<kubectl's and helm's folders>:"$PATH"`` when either is built (else nothing)."""
    bins = []
    for tool in ("kubectl", "helm"):
        try:
            bins.append(str(config.binary(tool).parent))
        except config.MissingBinaryError:
            pass
    return [f'PATH={shlex.quote(":".join(bins))}:"$PATH"'] if bins else []


def cmd_status(args: argparse.Namespace, st: Path) -> int:
    record = state.load(st)
    names = ["s3", *reversed(controlplane.COMPONENTS)]
    for name in names:
        pid = procs.running_pid(st, name)
        print(f"{name:<25} {f'running (pid {pid})' if pid else 'stopped'}")
    if record.control_plane is not None and procs.running_pid(st, "node"):
        try:
            for node in ProcessNode(record.control_plane.node_control_port, st).nodes():
                flags = [k for k in ("preempting", "gone") if node[k]]
                if not node["renewing"]:
                    flags.append("lease-stopped")
                print(f"  node {node['name']:<20} {node['capacityType']:<10} {' '.join(flags)}")
        except (ProcessNodeError, OSError) as err:
            print(f"  process node not answering: {err}")
    if record.control_plane is not None:
        print(f"API server: {record.control_plane.server}")
    if record.s3 is not None:
        print(f"S3: {record.s3.endpoint} (bucket {record.s3.bucket})")
    print(f"state dir: {st}")
    return 0


def _node(st: Path) -> ProcessNode:
    record = state.load(st)
    if record.control_plane is None or not procs.running_pid(st, "node"):
        raise SystemExit("the process node is not up: run `hack/cluster --process up` first")
    return ProcessNode(record.control_plane.node_control_port, st)


def cmd_preempt(args: argparse.Namespace, st: Path) -> int:
    node = _node(st)
    node.preempt(args.node, args.notice)
    print(f"{args.node}: interruption notice ({args.notice:g}s), then eviction and deletion",
          flush=True)
    while not any(n["name"] == args.node and n["gone"] for n in node.nodes()):
        time.sleep(0.5)
    print(f"{args.node}: gone")
    return 0


def cmd_add_node(args: argparse.Namespace, st: Path) -> int:
    capacity_type = args.target or "spot"
    if capacity_type not in CAPACITY_TYPES:
        raise SystemExit(f"hack/cluster add-node: {capacity_type!r} is not one of "
                         f"{', '.join(CAPACITY_TYPES)} (a kind worker: hack/cluster "
                         "add-node NODE)")
    print(_node(st).add_node(capacity_type))
    return 0


def down(st: Path) -> list[int]:
    """Stop everything started for the state dir ``st``; the pids that had to be swept."""
    controlplane.stop(st)
    s3server.stop(st)
    leftovers = procs.sweep(st)
    record = state.load(st)
    record.control_plane = None
    record.s3 = None
    state.save(st, record)
    return leftovers


def cmd_down(args: argparse.Namespace, st: Path) -> int:
    leftovers = down(st)
    if leftovers:
        print(f"killed {len(leftovers)} leftover process(es): {leftovers}")
    print("down: no process of the local cluster is left")
    return 0


def node_counts(spot: int | None, on_demand: int | None, kind: bool) -> tuple[int, int]:
    """``up``'s (spot, on-demand) nodes: as given, else 3 and 1 process nodes, 1 and 1 on kind."""
    default = (kindcluster.DEFAULT_SPOT, kindcluster.DEFAULT_ON_DEMAND) if kind else (3, 1)
    return (default[0] if spot is None else spot, default[1] if on_demand is None else on_demand)


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """--kind (the default) or --process: which cluster (kindcluster.backend decides)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--kind", action="store_true",
                       help="hack/kind's cluster: the default (also SPOTRUN_CLUSTER=kind)")
    which.add_argument("--process", action="store_true",
                       help="the process node, a kubelet stand-in of host processes "
                            "(also SPOTRUN_CLUSTER=process)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    add_cluster_flags(p)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the S3 server, the control plane and the nodes")
    up.add_argument("--spot", type=int, help="spot nodes (default 1; --process: 3)")
    up.add_argument("--on-demand", type=int, help="on-demand nodes (default 1)")
    up.add_argument("--s3-only", action="store_true",
                    help="--process: start only the S3 server")
    up.add_argument("--node-grace", type=int,
                    help="--process: --node-monitor-grace-period in seconds (default 20)")
    sub.add_parser("env", help="print export lines for KUBECONFIG, S3 endpoint, keys, bucket")
    sub.add_parser("status", help="show what runs")
    pre = sub.add_parser("preempt", help="interrupt a node like a cloud reclaims spot capacity")
    pre.add_argument("node")
    pre.add_argument("--notice", type=float, default=0, help="seconds of notice (default 0)")
    pre.add_argument("--abrupt", action="store_true",
                     help="the node vanishes with no notice (its container killed); not "
                          "with --process")
    pre.add_argument("--shutdown", action="store_true",
                     help="the node is powered off and the kubelet's graceful node shutdown "
                          "ends its pods (GKE's way); not with --process")
    add = sub.add_parser("add-node", help="bring a fresh node")
    add.add_argument("target", nargs="?", metavar="spot|on-demand|NODE",
                     help="the worker a preemption took away; --process: the capacity type "
                          "(default spot)")
    down_ = sub.add_parser("down", help="stop everything; leaves no process behind")
    down_.add_argument("--engine", action="store_true",
                       help="also stop the Docker engine hack/kind started; not with "
                            "--process")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        which = kindcluster.backend(args.kind, args.process, os.environ.get("SPOTRUN_CLUSTER"))
    except ValueError as err:
        print(f"hack/cluster: {err}", file=sys.stderr)
        return 2
    if which == "kind":
        from . import kindcli  # it imports this module

        return kindcli.main(args)
    for option in ("abrupt", "shutdown", "engine"):
        if getattr(args, option, False):
            print(f"hack/cluster {args.command}: --{option} is kind's, not the process "
                  "node's: leave out --process", file=sys.stderr)
            return 2
    if args.command == "up":
        args.spot, args.on_demand = node_counts(args.spot, args.on_demand, kind=False)
    st = config.state_dir()
    handler = {
        "up": cmd_up, "env": cmd_env, "status": cmd_status, "preempt": cmd_preempt,
        "add-node": cmd_add_node, "down": cmd_down,
    }[args.command]
    try:
        return handler(args, st)
    except (config.MissingBinaryError, RuntimeError, TimeoutError) as err:
        print(f"hack/cluster {args.command}: {err}", file=sys.stderr)
        return 1
