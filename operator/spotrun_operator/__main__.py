"""``python -m spotrun_operator [--namespace NS ...] [--all-namespaces]``: run the operator.

Namespace-scoped with ``--namespace`` (repeatable) or ``SPOTRUN_NAMESPACES`` (comma-separated);
cluster-wide otherwise. ``--liveness`` serves kopf's health endpoint; ``--peering`` joins a
kopf peering so that of several replicas only one is active.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spotrun_operator", description=__doc__)
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: SPOTRUN_NAMESPACES or all",
    )
    p.add_argument(
        "--liveness",
        default=os.environ.get("SPOTRUN_LIVENESS"),
        help="e.g. http://0.0.0.0:8080/healthz",
    )
    p.add_argument(
        "--peering",
        default=os.environ.get("SPOTRUN_PEERING"),
        help="kopf peering name (for 2+ replicas); default: standalone",
    )
    p.add_argument("--verbose", "-v", action="store_true")
    args = p.parse_args(argv)
    namespaces = args.namespace or [
        n for n in os.environ.get("SPOTRUN_NAMESPACES", "").split(",") if n
    ]
    cmd = ["run", "-m", "spotrun_operator.handlers"]
    cmd += [f"--namespace={n}" for n in namespaces] or ["--all-namespaces"]
    cmd += [f"--peering={args.peering}"] if args.peering else ["--standalone"]
    if args.liveness:
        cmd.append(f"--liveness={args.liveness}")
    if args.verbose:
        cmd.append("--verbose")
    from kopf import cli

    try:
        cli.main(args=cmd, prog_name="spotrun_operator", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
