# Shared by hack/kind/up and hack/kind/down (sourced after lib.sh): the cluster's name, state
# and kind binary.
# shellcheck shell=bash
# shellcheck disable=SC2034  # used by the scripts that source this file
NAME="${SPOTRUN_KIND_CLUSTER:-spotrun}"
# shellcheck disable=SC2034
API_PORT="${SPOTRUN_KIND_API_PORT:-36443}"
# one state folder per cluster name (kubeconfig, kind config, logs): `cluster` for the default,
# `cluster-<name>` for another one (kindcluster.py's cluster_state_dir says the same)
CLUSTER_STATE="$KIND_STATE/cluster"
[[ "$NAME" == spotrun ]] || CLUSTER_STATE="$KIND_STATE/cluster-$NAME"
# shellcheck disable=SC2034
KUBECONFIG_FILE="$CLUSTER_STATE/kubeconfig"

kind_bin() {  # the kind hack/kind/build-parts built
  local bin="$CACHE/bin/kind-$KIND_VERSION/kind"
  [[ -x "$bin" ]] || die "kind $KIND_VERSION is not built ($bin): run hack/kind/build-parts kind"
  echo "$bin"
}

cluster_exists() {  # cluster_exists KIND
  "$1" get clusters 2>/dev/null | grep -qxF "$NAME"
}
