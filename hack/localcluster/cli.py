"""``hack/cluster``: up, env, status, preempt, add-node, down."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import config, controlplane, procs, s3server, state
from .node.handle import ProcessNode, ProcessNodeError


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
        print("control plane already running; `hack/cluster down` first to change node counts")
    else:
        print("starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager and the "
              "process node ...", flush=True)
        started = time.monotonic()
        record.control_plane = controlplane.start(
            st, args.spot, args.on_demand, node_monitor_grace_seconds=args.node_grace,
            progress=lambda message: print(f"  {message}", flush=True),
        )
        state.save(st, record)
        print(f"cluster up in {time.monotonic() - started:.0f}s")
    print(f"logs in {st / 'logs'}; `eval \"$(hack/cluster env)\"` to use it")
    return 0


def cmd_env(args: argparse.Namespace, st: Path) -> int:
    record = state.load(st)
    if record.s3 is None and record.control_plane is None:
        print("nothing is up: run `hack/cluster up` first", file=sys.stderr)
        return 1
    lines = []
    if record.control_plane is not None:
        lines.append(f"KUBECONFIG={record.control_plane.kubeconfig}")
        bins = []
        for tool in ("kubectl", "helm"):
            try:
                bins.append(str(config.binary(tool).parent))
            except config.MissingBinaryError:
                pass
        if bins:
            lines.append(f'PATH={shlex.quote(":".join(bins))}:"$PATH"')
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
        raise SystemExit("the cluster is not up: run `hack/cluster up` first")
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
    print(_node(st).add_node(args.capacity_type))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the S3 server, the control plane and the process node")
    up.add_argument("--spot", type=int, default=3, help="spot nodes (default 3)")
    up.add_argument("--on-demand", type=int, default=1, help="on-demand nodes (default 1)")
    up.add_argument("--s3-only", action="store_true", help="start only the S3 server")
    up.add_argument("--node-grace", type=int, default=20,
                    help="--node-monitor-grace-period in seconds (default 20)")
    sub.add_parser("env", help="print export lines for KUBECONFIG, S3 endpoint, keys, bucket")
    sub.add_parser("status", help="show what runs")
    pre = sub.add_parser("preempt", help="interrupt a node like a cloud reclaims spot capacity")
    pre.add_argument("node")
    pre.add_argument("--notice", type=float, default=0, help="seconds of notice (default 0)")
    add = sub.add_parser("add-node", help="bring a fresh node")
    add.add_argument("capacity_type", nargs="?", default="spot", choices=["spot", "on-demand"])
    sub.add_parser("down", help="stop everything; leaves no process behind")
    args = parser.parse_args(argv)
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
