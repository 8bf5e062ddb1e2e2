"""``python -m spotrun_operator [--namespace NS ...] [--all-namespaces]``: run the operator.

Namespace-scoped with ``--namespace`` (repeatable) or ``SPOTRUN_NAMESPACES`` (comma-separated);
cluster-wide otherwise. ``--liveness`` serves kopf's health endpoint; ``--peering`` joins a
kopf peering so that of several replicas only one is active. ``--metrics-port N``
(``SPOTRUN_METRICS_PORT``; 0 or unset: off) serves Prometheus metrics at ``:N/metrics``;
``--log-level`` (``SPOTRUN_LOG_LEVEL``, default INFO) sets how much the operator logs.
``--sidecar-image`` (``SPOTRUN_SIDECAR_IMAGE``; unset: off) runs every job's sidecar from that
image and injects its ``spotrun-exec`` entrypoint into the trainer (``injection.py``), so a
training image needs no spotrun.
``SPOTRUN_PROFILE=<file>`` samples every thread's stack and writes them there at exit
(``profiling.py``; for benchmarks).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import injection


def start_line(namespaces: list[str], peering: str | None) -> str:
    """The operator's first log line: its version (the wheel's, one place) and its scope."""
    from spotrun.version import __version__

    scope = ", ".join(namespaces) or "all namespaces"
    mode = f"peering {peering!r}" if peering else "standalone"
    return f"spotrun operator {__version__} starting: watching {scope}, {mode}"


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
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz",
    )
    p.add_argument(
        "--peering",
        default=os.environ.get("SPOTRUN_PEERING"),
        help="kopf peering name (for 2+ replicas); default: standalone",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("SPOTRUN_METRICS_PORT") or 0),
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics; 0: off (default)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=(os.environ.get("SPOTRUN_LOG_LEVEL") or "INFO").upper(),
        help="the operator's log level (default INFO: decisions and Events)",
    )
    p.add_argument(
        injection.FLAG,
        default=os.environ.get(injection.ENV, ""),
        help="the spotrun sidecar image (sidecar/Dockerfile): each job's sidecar runs from it "
        "and the trainer's command goes through the spotrun-exec it holds; empty (default): "
        "the sidecar runs from the trainer's image and the trainer's through `spotrun exec`",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="kopf's own verbose logging")
    args = p.parse_args(argv)
    try:
        os.environ[injection.ENV] = injection.sidecar_image(args.sidecar_image) or ""
    except injection.SettingError as err:
        p.error(str(err))  # exits 2, naming the setting
    os.environ["SPOTRUN_LOG_LEVEL"] = args.log_level  # read by the kopf startup handler
    namespaces = args.namespace or [
        n for n in os.environ.get("SPOTRUN_NAMESPACES", "").split(",") if n
    ]
    os.environ["SPOTRUN_NAMESPACES"] = ",".join(namespaces)  # the scope of overlap checks
    cmd = ["run", "-m", "spotrun_operator.handlers"]
    cmd += [f"--namespace={n}" for n in namespaces] or ["--all-namespaces"]
    cmd += [f"--peering={args.peering}"] if args.peering else ["--standalone"]
    if args.liveness:
        cmd.append(f"--liveness={args.liveness}")
    if args.verbose or args.log_level == "DEBUG":
        cmd.append("--debug" if args.log_level == "DEBUG" else "--verbose")
    elif args.log_level in ("WARNING", "ERROR"):
        cmd.append("--quiet")
    from .profiling import start_from_env

    start_from_env(os.environ)
    if args.metrics_port:
        from .metrics import METRICS

        METRICS.serve(args.metrics_port)
    from kopf import cli

    print(start_line(namespaces, args.peering), file=sys.stderr, flush=True)
    try:
        cli.main(args=cmd, prog_name="spotrun_operator", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
