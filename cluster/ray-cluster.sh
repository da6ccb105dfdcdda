#!/usr/bin/env bash
# Start and stop a Ray cluster for rayisolates with Ray's own `ray start`,
# token authentication on.
#
#   ray-cluster.sh up [--workers N] [--port P] [--state DIR]
#       A head and N worker nodes on this machine, on loopback (default N=2):
#       for trying multi-node isolates on one machine.
#   ray-cluster.sh head [--port P] [--state DIR] [--ip IP]
#       Only the head node (several hosts: run this on the head host).
#   ray-cluster.sh worker --address HEAD_IP:PORT --token-file FILE [--name NAME] [--ip IP]
#       One worker node joining a head on another host.
#   ray-cluster.sh env [--state DIR]
#       Print the exports a client needs: eval "$(cluster/ray-cluster.sh env)".
#   ray-cluster.sh down [--state DIR]
#       Stop every Ray process this script started with that state folder,
#       and nothing else (unlike `ray stop`, which stops all Ray on the host).
#
# Every node gets a custom resource named after it ("node_head",
# "node_worker_1", ...; 1000 units), so isolates can be placed:
#   Isolate.spawn(entry, msg, resources={"node_worker_1": 1})
#
# Token authentication: the head's token is $RAY_AUTH_TOKEN if set, else a new
# random one, kept in $STATE/auth_token (mode 600). Local workers read it from
# there; copy that file to other hosts (scp) and pass --token-file there.
# Clients need RAY_AUTH_MODE=token and the token (see `env`).
set -euo pipefail

RAY=${RAY:-$(command -v ray || true)}
if [[ -z "$RAY" ]]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  RAY="$here/.venv/bin/ray"
fi
[[ -x "$RAY" ]] || { echo "ray-cluster.sh: cannot find the ray command; set RAY=/path/to/ray" >&2; exit 2; }

command=${1:-}
shift || true
workers=2
port=6379
state=${RAYISOLATES_CLUSTER_STATE:-/tmp/rayisolates-cluster}
address=""
token_file=""
name=""
ip=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) workers=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --address) address=$2; shift 2 ;;
    --token-file) token_file=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --ip) ip=$2; shift 2 ;;
    *) echo "ray-cluster.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

free_port() {
  "$(dirname "$RAY")/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_token() {
  mkdir -p "$state"
  local file="$state/auth_token"
  if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
    (umask 077; printf '%s' "$RAY_AUTH_TOKEN" > "$file")
  elif [[ ! -s "$file" ]]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$file")
  fi
  export RAY_AUTH_MODE=token
  export RAY_AUTH_TOKEN_PATH="$file"
  unset RAY_AUTH_TOKEN
}

start_head() {
  local node_ip=${ip:-127.0.0.1}
  ensure_token
  if [[ -s "$state/address" ]]; then
    echo "ray-cluster.sh: a cluster from $state seems to run already ($(cat "$state/address")); run 'down' first" >&2
    exit 1
  fi
  mkdir -p "$state/tmp"
  "$RAY" start --head --port "$port" --node-ip-address "$node_ip" \
    --temp-dir "$state/tmp" --disable-usage-stats \
    --dashboard-port "$(free_port)" --ray-client-server-port "$(free_port)" \
    --resources '{"node_head": 1000}' > "$state/head.log" 2>&1 \
    || { cat "$state/head.log" >&2; exit 1; }
  echo "$node_ip:$port" > "$state/address"
  echo "head node up at $node_ip:$port"
}

start_worker() {
  local head=$1 label=$2
  "$RAY" start --address "$head" ${ip:+--node-ip-address "$ip"} --disable-usage-stats \
    --resources "{\"node_$label\": 1000}" > "$state/$label.log" 2>&1 \
    || { cat "$state/$label.log" >&2; exit 1; }
  echo "worker node $label joined $head"
}

print_env() {
  echo "export RAY_ADDRESS=$(cat "$state/address")"
  echo "export RAY_AUTH_MODE=token"
  echo "export RAY_AUTH_TOKEN_PATH=$state/auth_token"
}

stop_all() {
  # Ray's processes carry the state folder in their command lines. A raylet
  # may still be starting a worker while it is told to stop, so this keeps
  # going until nothing matches: TERM first, KILL after 5 s, give up after 20 s.
  local marker="$state/tmp"
  local pids signal
  for round in $(seq 100); do
    pids=$(pgrep -f -- "$marker" || true)
    [[ -n "$pids" ]] || break
    signal=TERM
    (( round <= 25 )) || signal=KILL
    if (( round == 1 || round > 25 )); then
      local children=""
      for pid in $pids; do children="$children $(pgrep -P "$pid" || true)"; done
      kill -"$signal" $pids $children 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$state/address"
  if pids=$(pgrep -f -- "$marker"); then
    echo "ray-cluster.sh: could not stop $pids" >&2
    exit 1
  fi
  echo "stopped the cluster of $state"
}

case "$command" in
  up)
    start_head
    for i in $(seq "$workers"); do start_worker "$(cat "$state/address")" "worker_$i"; done
    echo
    echo "Ray cluster up: a head and $workers worker node(s). For clients:"
    print_env
    ;;
  head)
    start_head
    echo "Copy $state/auth_token to each worker host, then run there:"
    echo "  cluster/ray-cluster.sh worker --address $(cat "$state/address") --token-file auth_token"
    ;;
  worker)
    [[ -n "$address" && -n "$token_file" ]] || { echo "worker needs --address and --token-file" >&2; exit 2; }
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH
    RAY_AUTH_TOKEN_PATH=$(cd "$(dirname "$token_file")" && pwd)/$(basename "$token_file")
    mkdir -p "$state"
    start_worker "$address" "${name:-worker_$(hostname -s)}"
    ;;
  env) print_env ;;
  down) stop_all ;;
  *) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
