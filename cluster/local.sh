#!/usr/bin/env bash
# A real multi-node Ray cluster on this one host, for development and tests.
#   cluster/local.sh up N      head + N worker nodes (`ray start`), all on 127.0.0.1
#   cluster/local.sh down      stop exactly the processes this script started
#   cluster/local.sh status
# Each node gets its own CPU count (MTL_NODE_CPUS, default 1), a GPU count (MTL_NODE_GPUS, default
# none: Ray detects real ones; a number on a machine without GPUs fakes them, for placement tests with
# MTL_ALLOW_FAKE_GPUS=1) and a custom resource naming it (node_head, node_worker1, ...).
# Token authentication stays on: the token is ~/.ray/auth_token
# (created if missing) and every node, driver and job client runs with RAY_AUTH_MODE=token.
# Then: python -m search.launch spaces/smoke.yaml --address auto   (or 127.0.0.1:$RAY_PORT)
set -euo pipefail
STATE=${MTL_LOCAL_CLUSTER:-/tmp/mtl-local-cluster}
PORT=${RAY_PORT:-6390}
DASHBOARD=${RAY_DASHBOARD_PORT:-8265}
CPUS=${MTL_NODE_CPUS:-1}
GPUS=${MTL_NODE_GPUS:+--num-gpus=$MTL_NODE_GPUS}
STORE=$((300 * 1024 * 1024))  # small object stores: several nodes share one host's memory
export RAY_AUTH_MODE=token

node_pids() {  # processes whose command line names this cluster's temp dir, and all their descendants
  local pids todo child
  pids="$(pgrep -f -- "$STATE/ray" || true) $(pgrep -f -- "ray.util.client.server --address=[0-9.]*:$PORT" || true)"
  todo=$pids
  while [ -n "$todo" ]; do
    child=$(for p in $todo; do pgrep -P "$p" || true; done)
    pids="$pids $child"
    todo=$child
  done
  echo $pids
}

case "${1:-}" in
  up)
    n=${2:?usage: local.sh up N}
    if [ -n "$(node_pids)" ]; then echo "a local cluster is already up ($STATE); run: $0 down" >&2; exit 2; fi
    mkdir -p "$STATE"
    [ -s "$HOME/.ray/auth_token" ] || ray get-auth-token --generate > /dev/null
    ray start --head --port="$PORT" --node-ip-address=127.0.0.1 --num-cpus="$CPUS" $GPUS \
      --resources='{"node_head": 1}' --temp-dir="$STATE/ray" --object-store-memory="$STORE" \
      --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD" --disable-usage-stats \
      > "$STATE/head.log" 2>&1 || { tail -5 "$STATE/head.log" >&2; exit 1; }
    for i in $(seq 1 "$n"); do
      ray start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus="$CPUS" $GPUS \
        --resources="{\"node_worker$i\": 1}" --temp-dir="$STATE/ray-w$i" --object-store-memory="$STORE" \
        --disable-usage-stats > "$STATE/worker$i.log" 2>&1 || { tail -5 "$STATE/worker$i.log" >&2; exit 1; }
    done
    echo "127.0.0.1:$PORT" > "$STATE/address"
    echo "local Ray cluster up: head + $n workers at 127.0.0.1:$PORT (dashboard http://127.0.0.1:$DASHBOARD)"
    ;;
  down)
    pids=$(node_pids)
    if [ -n "$pids" ]; then
      kill $pids 2> /dev/null || true
      # drivers and workers exit on SIGTERM; gcs_server and raylet do not (measured), so wait briefly
      for _ in $(seq 1 4); do [ -z "$(node_pids)" ] && break; sleep 0.5; done
      pids=$(node_pids); [ -z "$pids" ] || kill -9 $pids 2> /dev/null || true
    fi
    rm -f "$STATE/address"
    echo "local Ray cluster down"
    ;;
  status)
    ray status --address="127.0.0.1:$PORT"
    ;;
  *)
    echo "usage: $0 up N | down | status" >&2
    exit 2
    ;;
esac
