#!/usr/bin/env bash
# Submit a sweep as a Ray job to a cluster's job server:
#   cluster/submit.sh spaces/groupings.yaml [launch options ...]
# RAY_ADDRESS (default http://127.0.0.1:8265) is the dashboard/job server; the launcher itself joins the
# cluster with --address auto. MTL_RUNTIME_ENV=cluster/runtime_env.yaml installs the dependencies on the
# workers (leave it unset when the nodes already have the project installed).
set -euo pipefail
space=${1:?usage: cluster/submit.sh SPACE.yaml [launch options]}
shift
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
env_args=()
[ -n "${MTL_RUNTIME_ENV:-}" ] && env_args=(--runtime-env "$MTL_RUNTIME_ENV")
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --working-dir . "${env_args[@]}" \
  -- python -m search.launch "$space" --address auto "$@"
