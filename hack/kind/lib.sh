# Shared by the hack/kind/* scripts (sourced, not run): versions, cache paths, progress lines
# and failures that name the step and the cause.
#
# Cache layout (${SPOTRUN_CACHE:-~/.cache/spotrun}):
#   bin/<component>-<version>/   built binaries (kind, containerd, runc, cni-plugins, crictl,
#                                kubelet+kubeadm as kubernetes-node-<version>)
#   build/<component>-<version>.log, build/<component>-<version>/   logs and scratch modules
#   kind/                        state: the Docker engine we start, rootfs trees, proofs
# shellcheck shell=bash source-path=SCRIPTDIR
KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HACK_DIR="$(dirname "$KIND_DIR")"
# shellcheck source=../versions.env
source "$HACK_DIR/versions.env"
# shellcheck source=versions.env
source "$KIND_DIR/versions.env"
# shellcheck source=images.env
source "$KIND_DIR/images.env"

CACHE="${SPOTRUN_CACHE:-$HOME/.cache/spotrun}"
# shellcheck disable=SC2034  # used by the scripts that source this file
KIND_STATE="${SPOTRUN_KIND_STATE:-$CACHE/kind}"
export GOMODCACHE="${GOMODCACHE:-$CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$CACHE/go/build}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

STEP="${STEP:-kind}"
REPORTED=86  # exit status of a failure already explained by die
on_err() {  # on_err STATUS: a failure nobody explained yet gets the command that failed
  (( $1 == REPORTED )) && exit "$REPORTED"
  die "command failed (exit $1): $BASH_COMMAND"
}
trap 'on_err $?' ERR

log() { printf '[kind:%s] %s\n' "$STEP" "$*" >&2; }

die() {  # die CAUSE [LOGFILE]: one line naming the step and the cause, then the log's tail
  trap - ERR
  log "FAILED: $1"
  if [[ -n "${2:-}" && -f "$2" ]]; then
    log "last lines of $2:"
    tail -n 25 "$2" >&2
  fi
  exit "$REPORTED"
}

use_engine() {  # point docker (and kind) at the engine docker-engine chose; stop if none answers
  local exports
  exports="$("$KIND_DIR/docker-engine" env)" || exit "$REPORTED"  # it said why
  eval "$exports"
}

need_root() {  # need_root WHAT
  (( EUID == 0 )) || die "$1 needs root (run as root, or install it yourself and rerun)"
}

# Run a long step at the lowest CPU priority, its output in LOGFILE, a progress line every 30 s.
run_logged() {  # run_logged WHAT LOGFILE CMD...
  local what="$1" logfile="$2"; shift 2
  local start=$SECONDS next=30
  log "$what ..."
  nice -n 19 "$@" >>"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( SECONDS - start >= next )); then
      log "$what ... $((SECONDS - start))s"
      next=$((next + 30))
    fi
  done
  wait "$pid" || die "$what failed (full log: $logfile)" "$logfile"
  log "$what done in $((SECONDS - start))s"
}

# One build at a time per cache, shared with hack/build-binaries' lock (the same cores).
build_lock() {
  mkdir -p "$CACHE/build"
  exec 9>"$CACHE/build/.lock"
  if ! flock -n 9; then
    log "another build (hack/build-binaries or hack/kind) is running; waiting for it"
    flock 9
  fi
}
