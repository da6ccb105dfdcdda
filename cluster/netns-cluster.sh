#!/usr/bin/env bash
# Several hosts on one machine: a Ray node in each of N network namespaces,
# each with its own network stack and address, so a node can be cut off from
# the others (a partition) and brought back. Needs root and `ip netns`.
#
#   netns-cluster.sh up N [--state DIR] [--prefix P] [--subnet A.B.C]
#       N namespaces on a bridge, node i at A.B.C.(i+1) (default subnet
#       10.213.0, used only inside these namespaces); a Ray head in the first
#       (node "head"), workers in the others (nodes "a", "b", ...); token
#       authentication on. Each node has the resource "node_NAME" (1000).
#   netns-cluster.sh run [--state DIR] NODE CMD...
#       Run CMD inside NODE's namespace with RAY_ADDRESS and the token set
#       (a driver: netns-cluster.sh run head python examples/cluster_ring.py).
#   netns-cluster.sh cut NODE / heal NODE
#       Take NODE's link to the bridge down (its packets go nowhere, nothing
#       tells its peers) / bring it back up.
#   netns-cluster.sh env
#       Print the exports a driver inside a namespace needs.
#   netns-cluster.sh down [--state DIR]
#       Stop this cluster's Ray processes and delete exactly the namespaces
#       `up` made (the bridge and veth pairs go with them).
#
# Ray settings in the environment (RAY_health_check_period_ms=..., say) reach
# the nodes at `up` and the drivers at `run`.
#
# The state folder (default /tmp/rayisolates-netns; keep it short, Ray's
# socket paths are limited) holds the token (mode 600), the head's address,
# the list of namespaces and Ray's temp folder. Nothing is added to the
# machine's own network namespace: the bridge lives in a namespace of its
# own ("P-net"), and the nodes' addresses are reachable only from the nodes.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
RAY=${RAY:-$(command -v ray || true)}
[[ -n "$RAY" ]] || RAY="$here/.venv/bin/ray"

die() { echo "netns-cluster.sh: $*" >&2; exit 2; }

command=${1:-}
shift || true
count=""
[[ "$command" == up && $# -gt 0 && "$1" != --* ]] && { count=$1; shift; }
state=${RAYISOLATES_NETNS_STATE:-/tmp/rayisolates-netns}
prefix=ri
subnet=10.213.0
port=6379
while [[ $# -gt 0 && "$1" == --* ]]; do  # options come before NODE and CMD
  case "$1" in
    --state) state=${2:?--state needs a folder}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done
[[ "$command" == up && -z "$count" && $# -gt 0 ]] && { count=$1; shift; }  # up [options] N

node_names() {  # head a b c ... (N names)
  local names=(head a b c d e f g h i j k l m n o p q r s t u v w x y z)
  echo "${names[@]:0:$1}"
}

require_netns() {
  [[ $(id -u) == 0 ]] || die "must run as root (network namespaces need CAP_SYS_ADMIN)"
  command -v ip > /dev/null || die "the ip command (iproute2) is missing"
  ip netns list > /dev/null 2>&1 || die "'ip netns' does not work here: $(ip netns list 2>&1 | head -1)"
}

saved() {  # a value `up` recorded
  [[ -s "$state/$1" ]] || die "no cluster recorded in $state (run 'up' first, or pass --state)"
  cat "$state/$1"
}

require_cluster() {
  [[ -s "$state/nodes" ]] || die "no cluster recorded in $state (run 'up' first, or pass --state)"
}

node_index() {  # NODE -> its index in the recorded nodes
  local i=0
  for name in $(saved nodes); do
    [[ "$name" == "$1" ]] && { echo "$i"; return; }
    i=$((i + 1))
  done
  die "no node '$1' in this cluster (nodes: $(saved nodes))"
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ray_env() {
  echo "RAY_ADDRESS=$(saved address)"
  echo "RAY_AUTH_MODE=token"
  echo "RAY_AUTH_TOKEN_PATH=$state/auth_token"
}

up() {
  require_netns
  [[ "$count" =~ ^[0-9]+$ && "$count" -ge 1 && "$count" -le 26 ]] \
    || die "up needs a node count from 1 to 26, got '${count}'"
  [[ "$prefix" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--prefix must be 1-8 lowercase letters or digits, got '$prefix'"
  [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--subnet is three octets like 10.213.0, got '$subnet'"
  [[ -x "$RAY" ]] || die "cannot find the ray command; set RAY=/path/to/ray"
  [[ ! -s "$state/namespaces" ]] || die "a cluster from $state is up already ($(cat "$state/namespaces")); run 'down' first"
  local names bridge_ns=$prefix-net
  names=$(node_names "$count")
  for ns in $bridge_ns $(for n in $names; do echo "$prefix-$n"; done); do
    ! ip netns list | grep -qw -- "$ns" || die "namespace $ns exists already (another cluster with --prefix $prefix?)"
  done
  mkdir -p "$state/tmp"
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$state/auth_token")
  echo "$names" > "$state/nodes"
  echo "$prefix" > "$state/prefix"
  echo "$subnet.1:$port" > "$state/address"
  : > "$state/namespaces"
  trap 'echo "netns-cluster.sh: up failed; cleaning up" >&2; down' ERR

  ip netns add "$bridge_ns"
  echo "$bridge_ns" >> "$state/namespaces"
  in_ns "$bridge_ns" ip link add br0 type bridge
  in_ns "$bridge_ns" ip link set br0 up
  local i=0
  for name in $names; do
    local ns=$prefix-$name
    i=$((i + 1))
    ip netns add "$ns"
    echo "$ns" >> "$state/namespaces"
    ip -n "$bridge_ns" link add "v-$name" type veth peer name eth0 netns "$ns"
    ip -n "$bridge_ns" link set "v-$name" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$subnet.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
  done

  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$state/auth_token"
  unset RAY_AUTH_TOKEN RAY_ADDRESS
  i=0
  for name in $names; do
    i=$((i + 1))
    local role=(--address "$subnet.1:$port")
    [[ $i == 1 ]] && role=(--head --port "$port" --temp-dir "$state/tmp" --include-dashboard=false)
    in_ns "$prefix-$name" "$RAY" start "${role[@]}" --node-ip-address "$subnet.$i" \
      --num-cpus 1 --disable-usage-stats --resources "{\"node_$name\": 1000}" \
      > "$state/$name.log" 2>&1 || { cat "$state/$name.log" >&2; false; }
    echo "node $name up at $subnet.$i (namespace $prefix-$name)"
  done
  trap - ERR
  echo
  echo "Ray cluster up in $count namespaces. A driver: $0 run head python your_program.py"
}

run() {
  local node=${1:-}
  [[ -n "$node" ]] || die "run needs a node and a command"
  shift
  [[ $# -gt 0 ]] || die "run needs a command after the node"
  node_index "$node" > /dev/null
  local env_args
  mapfile -t env_args < <(ray_env)
  exec ip netns exec "$(saved prefix)-$node" env "${env_args[@]}" "$@"
}

link() {  # up|down NODE
  local node=${2:-}
  [[ -n "$node" ]] || die "$3 needs a node (nodes: $(saved nodes))"
  node_index "$node" > /dev/null
  ip -n "$(saved prefix)-net" link set "v-$node" "$1"
}

down() {
  local namespaces=""
  [[ -f "$state/namespaces" ]] && namespaces=$(cat "$state/namespaces")
  # Ray's processes carry the state folder in their command lines, and run in
  # our namespaces: TERM first, KILL after 5 s, give up after 20 s.
  local pids signal round
  for round in $(seq 100); do
    pids=$( (pgrep -f -- "$state/tmp" || true; for ns in $namespaces; do ip netns pids "$ns" 2>/dev/null || true; done) | sort -u)
    [[ -n "$pids" ]] || break
    signal=TERM
    (( round <= 25 )) || signal=KILL
    (( round == 1 || round > 25 )) && { kill -"$signal" $pids 2>/dev/null || true; }
    sleep 0.2
  done
  [[ -z "$pids" ]] || die "could not stop $pids"
  for ns in $namespaces; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "$state/namespaces" "$state/address" "$state/nodes" "$state/prefix"
  echo "stopped the cluster of $state and deleted its namespaces${namespaces:+: $(echo $namespaces)}"
}

case "$command" in
  up) up ;;
  run) require_cluster; run "$@" ;;
  cut) require_netns; require_cluster; link down "${1:-}" cut ;;
  heal) require_netns; require_cluster; link up "${1:-}" heal ;;
  env) require_cluster; for line in $(ray_env); do echo "export $line"; done ;;
  down) require_netns; down ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
