#!/usr/bin/env bash
# Start a multi-node Ray cluster on one machine: a head and N workers, each in its own network
# namespace with its own address on a private bridge, token authentication on, an MLflow tracking
# server (artifacts proxied, MLflow's authentication on) in the head namespace, and a shared
# storage directory for Tune.
#
#   sudo cluster/local/start.sh [--name ID] [--workers N] [--state DIR] [options]
#   source DIR/cluster.env
#   ip netns exec "$SAKDN_HEAD_NS" ray job submit --working-dir . -- sakdn search experiments/X.yaml
#   sudo cluster/local/stop.sh --state DIR
#
# Every namespace, link, directory and process started here is recorded in DIR/created.txt, and
# stop.sh removes exactly those. Needs root (ip netns) and `ray`, `mlflow`, `sakdn`, `python3`,
# `curl` on PATH (the repository's .venv/bin is put first when it exists). See docs/cluster.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

usage() {
    cat <<'EOF'
usage: start.sh [options]
  --name ID                cluster id: lowercase letters/digits, 1-6 chars (default: random);
                           names are prefixed sk<ID> (namespaces sk<ID>-h, sk<ID>-w1, ...)
  --workers N              worker nodes (default 2, at most 50)
  --state DIR              state directory (default /tmp/sakdn-cluster-sk<ID>)
  --subnet A.B.C           private /24 for the bridge (default derived from the id, 10.x.y)
  --num-cpus N             logical CPUs per worker (default 1)
  --num-gpus N             GPUs per worker (default 0; workers share the machine's devices)
  --resources JSON         custom resources per worker, e.g. '{"trial_slot": 2}'
  --head-cpus N            logical CPUs of the head (default 0: the head runs no trials)
  --head-resources JSON    custom resources of the head
  --object-store-mb MB     object store per node (default 200)
  --ray-port P             GCS port (default 6379)
  --dashboard-port P       dashboard / Jobs API port (default 8265)
  --mlflow-port P          MLflow tracking server port (default 5000)
  --health-check-period-ms MS   GCS health-check period (Ray default 3000)
  --health-check-failures N     failed checks before a node is marked dead (Ray default 5)
  --host-access            give the bridge <subnet>.254 so this namespace reaches the cluster
  --timeout S              seconds the whole start may take (default 180)
  --keep-on-failure        leave everything running when start fails (for debugging)
EOF
}

ID=""
WORKERS=2
STATE=""
SUBNET=""
NUM_CPUS=1
NUM_GPUS=0
RESOURCES=""
HEAD_CPUS=0
HEAD_RESOURCES=""
OBJECT_STORE_MB=200
RAY_PORT=6379
DASHBOARD_PORT=8265
MLFLOW_PORT=5000
HC_PERIOD_MS=""
HC_FAILURES=""
HOST_ACCESS=0
TIMEOUT=180
KEEP_ON_FAILURE=0

die() { echo "start.sh: error: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --name) need_value "$@"; ID="$2"; shift 2 ;;
        --workers) need_value "$@"; WORKERS="$2"; shift 2 ;;
        --state) need_value "$@"; STATE="$2"; shift 2 ;;
        --subnet) need_value "$@"; SUBNET="$2"; shift 2 ;;
        --num-cpus) need_value "$@"; NUM_CPUS="$2"; shift 2 ;;
        --num-gpus) need_value "$@"; NUM_GPUS="$2"; shift 2 ;;
        --resources) need_value "$@"; RESOURCES="$2"; shift 2 ;;
        --head-cpus) need_value "$@"; HEAD_CPUS="$2"; shift 2 ;;
        --head-resources) need_value "$@"; HEAD_RESOURCES="$2"; shift 2 ;;
        --object-store-mb) need_value "$@"; OBJECT_STORE_MB="$2"; shift 2 ;;
        --ray-port) need_value "$@"; RAY_PORT="$2"; shift 2 ;;
        --dashboard-port) need_value "$@"; DASHBOARD_PORT="$2"; shift 2 ;;
        --mlflow-port) need_value "$@"; MLFLOW_PORT="$2"; shift 2 ;;
        --health-check-period-ms) need_value "$@"; HC_PERIOD_MS="$2"; shift 2 ;;
        --health-check-failures) need_value "$@"; HC_FAILURES="$2"; shift 2 ;;
        --host-access) HOST_ACCESS=1; shift ;;
        --timeout) need_value "$@"; TIMEOUT="$2"; shift 2 ;;
        --keep-on-failure) KEEP_ON_FAILURE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done

# ---------------------------------------------------------------- checks (nothing created yet)
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
[[ $EUID -eq 0 ]] || die "needs root (network namespaces); run with sudo"
command -v ip >/dev/null || die "'ip' (iproute2) not found"
ip netns list >/dev/null 2>&1 || die "'ip netns' is not available on this machine"
if [[ -z "${VIRTUAL_ENV:-}" && -x "$REPO/.venv/bin/ray" ]]; then
    PATH="$REPO/.venv/bin:$PATH"
fi
for tool in ray mlflow sakdn python3 curl; do
    command -v "$tool" >/dev/null || die "'$tool' not found on PATH (activate the project's venv)"
done

if [[ -z "$ID" ]]; then
    ID="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
fi
[[ "$ID" =~ ^[a-z0-9]{1,6}$ ]] || die "--name '$ID': use 1-6 lowercase letters or digits"
P="sk$ID"
is_uint "$WORKERS" && ((WORKERS >= 1 && WORKERS <= 50)) || die "--workers '$WORKERS': 1..50"
for pair in "num-cpus:$NUM_CPUS" "num-gpus:$NUM_GPUS" "head-cpus:$HEAD_CPUS" \
    "object-store-mb:$OBJECT_STORE_MB" "ray-port:$RAY_PORT" "dashboard-port:$DASHBOARD_PORT" \
    "mlflow-port:$MLFLOW_PORT" "timeout:$TIMEOUT"; do
    is_uint "${pair#*:}" || die "--${pair%%:*} '${pair#*:}' is not a non-negative integer"
done
((OBJECT_STORE_MB >= 80)) || die "--object-store-mb $OBJECT_STORE_MB: Ray needs at least 80"
[[ -z "$HC_PERIOD_MS" ]] || is_uint "$HC_PERIOD_MS" || die "--health-check-period-ms: integer"
[[ -z "$HC_FAILURES" ]] || is_uint "$HC_FAILURES" || die "--health-check-failures: integer"
for json in "$RESOURCES" "$HEAD_RESOURCES"; do
    [[ -z "$json" ]] \
        || python3 -c 'import json, sys; assert isinstance(json.loads(sys.argv[1]), dict)' \
            "$json" 2>/dev/null \
        || die "--resources / --head-resources '$json' is not a JSON object"
done

if [[ -z "$SUBNET" ]]; then
    h="$(printf '%s' "$P" | cksum | cut -d' ' -f1)"
    SUBNET="10.$((200 + h % 50)).$(((h / 50) % 256))"
fi
[[ "$SUBNET" =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ ]] \
    && ((BASH_REMATCH[1] <= 255 && BASH_REMATCH[2] <= 255)) \
    || die "--subnet '$SUBNET': give the first three octets of a private 10.x.y.0/24"
# The subnet must not overlap any network this machine already routes.
clash="$(ip -4 route show | python3 -c '
import ipaddress, sys
mine = ipaddress.ip_network(sys.argv[1] + ".0/24")
for line in sys.stdin:
    dest = line.split()[0]
    if dest == "default":
        continue
    net = ipaddress.ip_network(dest if "/" in dest else dest + "/32", strict=False)
    if net.overlaps(mine):
        print(line.strip())
' "$SUBNET")"
[[ -z "$clash" ]] || die "subnet $SUBNET.0/24 overlaps an existing route: $clash (pass --subnet)"

STATE="${STATE:-/tmp/sakdn-cluster-$P}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
CREATED="$STATE/created.txt"
if [[ -f "$CREATED" ]]; then
    while read -r kind name _; do
        if [[ "$kind" == netns ]] && ip netns list | awk '{print $1}' | grep -qx "$name"; then
            die "$STATE holds a running cluster (namespace $name): stop.sh --state $STATE"
        fi
    done <"$CREATED"
fi

HEAD_NS="$P-h"
WORKER_NS=()
for ((k = 1; k <= WORKERS; k++)); do WORKER_NS+=("$P-w$k"); done
BRIDGE="$P-br"
for ns in "$HEAD_NS" "${WORKER_NS[@]}"; do
    ! ip netns list | awk '{print $1}' | grep -qx "$ns" \
        || die "namespace $ns already exists (another cluster with --name $ID?)"
    ! ip link show "$ns-v" >/dev/null 2>&1 || die "link $ns-v already exists"
done
! ip link show "$BRIDGE" >/dev/null 2>&1 || die "link $BRIDGE already exists"

HEAD_IP="$SUBNET.1"
RAY_TMP="/tmp/ray-$P"   # short: Ray's unix sockets live under it (108-byte path limit)
# Claiming the name is atomic: of two starts with the same --name, only one gets past here.
mkdir "$RAY_TMP" 2>/dev/null || die "$RAY_TMP already exists (another cluster with --name $ID?)"

# ---------------------------------------------------------------- from here on, record everything
: >"$CREATED"
record() { echo "$*" >>"$CREATED"; }
record dir "$RAY_TMP"
mkdir -p "$STATE/logs" "$STATE/storage" "$STATE/artifacts"

READY=0
on_exit() {  # a start that did not reach "ready" removes what it made
    local rc=$?
    trap - EXIT INT TERM
    ((READY)) && exit "$rc"
    ((rc != 0)) || rc=1
    echo "start.sh: error: cluster $P did not start (exit $rc); logs in $STATE/logs" >&2
    for log in "$STATE"/logs/*.log; do
        [[ -f "$log" ]] || continue
        echo "---- last lines of $log" >&2
        tail -n 15 "$log" >&2 || true
    done
    if ((KEEP_ON_FAILURE)); then
        echo "start.sh: left running (--keep-on-failure): $HERE/stop.sh --state $STATE" >&2
    else
        "$HERE/stop.sh" --state "$STATE" >&2 || true
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'echo "start.sh: interrupted" >&2; exit 130' INT TERM

deadline=$((SECONDS + TIMEOUT))   # bounds everything below: ray start calls and readiness
remaining() { local left=$((deadline - SECONDS)); echo $((left > 1 ? left : 1)); }

# Network: one bridge; per node a veth pair, the node's end inside its namespace.
ip link add "$BRIDGE" type bridge
record link "$BRIDGE"
ip link set "$BRIDGE" up
if ((HOST_ACCESS)); then
    ip addr add "$SUBNET.254/24" dev "$BRIDGE"
fi
add_node_net() {  # namespace, address
    local ns="$1" addr="$2"
    ip netns add "$ns"
    record netns "$ns"
    ip link add "$ns-v" type veth peer name "$ns-p"
    record link "$ns-v"
    ip link set "$ns-p" netns "$ns"
    ip link set "$ns-v" master "$BRIDGE"
    ip link set "$ns-v" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev "$ns-p"
    ip -n "$ns" link set "$ns-p" up
}
add_node_net "$HEAD_NS" "$HEAD_IP"
WORKER_IPS=()
for ((k = 1; k <= WORKERS; k++)); do
    WORKER_IPS+=("$SUBNET.$((k + 1))")
    add_node_net "${WORKER_NS[k - 1]}" "${WORKER_IPS[k - 1]}"
done

# Token: a random secret readable by root only.
TOKEN_PATH="$STATE/auth_token"
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_PATH")
# The tracking server's search user (not an admin): its login, in MLflow's credentials-file
# format, readable by root only. Every Ray process gets the file's path, never the password
# (SAKDN_MLFLOW_CREDENTIALS); the admin's login is made by cluster/mlflow-auth.sh.
SEARCH_LOGIN="$STATE/mlflow_search.credentials"
(umask 077 && printf '[mlflow]\nmlflow_tracking_username = %s\nmlflow_tracking_password = %s\n' \
    sakdn-search "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$SEARCH_LOGIN")

MLFLOW_URI="http://$HEAD_IP:$MLFLOW_PORT"
NO_PROXY_LIST="$SUBNET.0/24,localhost,127.0.0.1${no_proxy:+,$no_proxy}"
DASHBOARD_URL="http://$HEAD_IP:$DASHBOARD_PORT"
# The environment of every Ray process (raylets pass it on to trials and job drivers).
NODE_ENV=(
    -u RAY_ADDRESS -u RAY_AUTH_TOKEN -u MLFLOW_TRACKING_USERNAME -u MLFLOW_TRACKING_PASSWORD
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1   # multi-node; a 0 here would pin Ray to loopback
    RAY_AUTH_MODE=token
    RAY_AUTH_TOKEN_PATH="$TOKEN_PATH"
    RAY_USAGE_STATS_ENABLED=0
    MLFLOW_TRACKING_URI="$MLFLOW_URI"
    SAKDN_MLFLOW_CREDENTIALS="$SEARCH_LOGIN"
    SAKDN_STORAGE="$STATE/storage"
    NO_PROXY="$NO_PROXY_LIST" no_proxy="$NO_PROXY_LIST"   # cluster traffic never via a proxy
)
[[ -z "$HC_PERIOD_MS" ]] || NODE_ENV+=(RAY_health_check_period_ms="$HC_PERIOD_MS"
    RAY_health_check_timeout_ms="$HC_PERIOD_MS" RAY_health_check_initial_delay_ms=0)
[[ -z "$HC_FAILURES" ]] || NODE_ENV+=(RAY_health_check_failure_threshold="$HC_FAILURES")

# MLflow tracking server in the head namespace; authentication on; artifacts proxied (clients
# never see the path).
# mlflow-server.sh starts it (and restarts it after an outage) from mlflow.conf; it records
# the server's pid in created.txt. Readiness is checked below, from every namespace.
printf 'ns=%s\nhost=%s\nport=%s\n' "$HEAD_NS" "$HEAD_IP" "$MLFLOW_PORT" >"$STATE/mlflow.conf"
: >"$STATE/logs/mlflow.log"
"$HERE/mlflow-server.sh" --state "$STATE" --how start --timeout 0 >/dev/null
MLFLOW_PID="$(cat "$STATE/mlflow.pid")"

OBJECT_STORE_BYTES=$((OBJECT_STORE_MB * 1024 * 1024))
head_args=(--head --node-ip-address="$HEAD_IP" --port="$RAY_PORT"
    --dashboard-host="$HEAD_IP" --dashboard-port="$DASHBOARD_PORT"
    --num-cpus="$HEAD_CPUS" --num-gpus=0 --object-store-memory="$OBJECT_STORE_BYTES"
    --temp-dir="$RAY_TMP/head" --disable-usage-stats)
[[ -z "$HEAD_RESOURCES" ]] || head_args+=(--resources="$HEAD_RESOURCES")
timeout "$(remaining)" ip netns exec "$HEAD_NS" env "${NODE_ENV[@]}" ray start "${head_args[@]}" \
    </dev/null >"$STATE/logs/head.log" 2>&1 \
    || { echo "start.sh: 'ray start --head' failed or timed out in $HEAD_NS" >&2; exit 1; }

worker_pids=()
for ((k = 1; k <= WORKERS; k++)); do
    args=(--address="$HEAD_IP:$RAY_PORT" --node-ip-address="${WORKER_IPS[k - 1]}"
        --num-cpus="$NUM_CPUS" --num-gpus="$NUM_GPUS" --object-store-memory="$OBJECT_STORE_BYTES"
        --temp-dir="$RAY_TMP/w$k" --disable-usage-stats)
    [[ -z "$RESOURCES" ]] || args+=(--resources="$RESOURCES")
    timeout "$(remaining)" ip netns exec "${WORKER_NS[k - 1]}" env "${NODE_ENV[@]}" \
        ray start "${args[@]}" </dev/null >"$STATE/logs/w$k.log" 2>&1 &
    worker_pids+=("$!")
done
for ((k = 1; k <= WORKERS; k++)); do
    wait "${worker_pids[k - 1]}" \
        || { echo "start.sh: 'ray start' failed or timed out in ${WORKER_NS[k - 1]}" >&2; exit 1; }
done

# ---------------------------------------------------------------- readiness (bounded)
alive_nodes() {  # prints the addresses of ALIVE nodes, one a line (the token stays off argv)
    ip netns exec "$HEAD_NS" python3 - "$DASHBOARD_URL" "$TOKEN_PATH" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
url, token_path = sys.argv[1], sys.argv[2]
token = open(token_path).read().strip()
request = urllib.request.Request(
    url + "/api/v0/nodes?limit=1000&detail=false", headers={"Authorization": "Bearer " + token}
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
try:
    with opener.open(request, timeout=5) as response:
        rows = json.load(response)["data"]["result"]["result"]
except Exception:
    sys.exit(0)
for row in rows:
    if row.get("state") == "ALIVE":
        print(row.get("node_ip"))
PY
}
want=$((WORKERS + 1))
while :; do
    have="$(alive_nodes | sort -u | grep -c . || true)"
    ((have == want)) && break
    if ((SECONDS >= deadline)); then
        echo "start.sh: Ray shows $have of $want nodes alive after ${TIMEOUT}s" >&2
        exit 1
    fi
    sleep 2
done
for ns in "$HEAD_NS" "${WORKER_NS[@]}"; do   # the tracking server must answer from every node
    until ip netns exec "$ns" curl -sf --noproxy '*' --max-time 3 "$MLFLOW_URI/health" \
        >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "start.sh: MLflow at $MLFLOW_URI does not answer from $ns after ${TIMEOUT}s" >&2
            exit 1
        fi
        sleep 1
    done
done

# The search user, created by the admin (the admin's login stays in the head namespace's file).
timeout "$(remaining)" ip netns exec "$HEAD_NS" env -u MLFLOW_TRACKING_USERNAME \
    -u MLFLOW_TRACKING_PASSWORD SAKDN_MLFLOW_CREDENTIALS="$STATE/mlflow_admin.credentials" \
    NO_PROXY="$NO_PROXY_LIST" no_proxy="$NO_PROXY_LIST" \
    sakdn tracking-user --credentials "$SEARCH_LOGIN" --tracking-uri "$MLFLOW_URI" \
    </dev/null >"$STATE/logs/mlflow-user.log" 2>&1 \
    || { echo "start.sh: could not create the MLflow search user" >&2; exit 1; }

for ns in "$HEAD_NS" "${WORKER_NS[@]}"; do   # the node's processes, as they are now
    for pid in $(ip netns pids "$ns"); do
        if [[ "$pid" != "$MLFLOW_PID" ]]; then record pid "$pid" node "$ns"; fi
    done
done

cat >"$STATE/cluster.env" <<EOF
# Local Ray cluster $P, started $(date -u +%Y-%m-%dT%H:%M:%SZ). Use:
#   source $STATE/cluster.env
#   ip netns exec \$SAKDN_HEAD_NS ray job submit --working-dir . -- sakdn search experiments/X.yaml
# The tracking server needs a login: sakdn reads SAKDN_MLFLOW_CREDENTIALS (the search user);
# other MLflow clients take MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD from that file.
export SAKDN_CLUSTER=$P
export SAKDN_CLUSTER_STATE=$STATE
export RAY_ADDRESS=$DASHBOARD_URL
export SAKDN_GCS_ADDRESS=$HEAD_IP:$RAY_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$TOKEN_PATH
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
export MLFLOW_TRACKING_URI=$MLFLOW_URI
export SAKDN_MLFLOW_CREDENTIALS=$SEARCH_LOGIN
export SAKDN_STORAGE=$STATE/storage
export SAKDN_HEAD_NS=$HEAD_NS
export SAKDN_HEAD_IP=$HEAD_IP
export SAKDN_WORKER_NS="${WORKER_NS[*]}"
export SAKDN_WORKER_IPS="${WORKER_IPS[*]}"
export NO_PROXY="$NO_PROXY_LIST"
export no_proxy="$NO_PROXY_LIST"
EOF

READY=1
echo "cluster $P ready: head $HEAD_IP ($HEAD_NS), workers ${WORKER_IPS[*]}"
echo "  Jobs API  $DASHBOARD_URL (token auth)   MLflow $MLFLOW_URI (login)   storage $STATE/storage"
echo "  source $STATE/cluster.env; stop with: $HERE/stop.sh --state $STATE"
