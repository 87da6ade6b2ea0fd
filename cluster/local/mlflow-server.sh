#!/usr/bin/env bash
# Stop or start the MLflow tracking server of a cluster made by start.sh: a tracking outage
# for fault tests, or a restart after a crash. The server comes back in the head namespace on
# the same address and port, with the same backend store and artifact root, so every run
# logged before the outage is still there.
#
#   sudo cluster/local/mlflow-server.sh --state DIR --how stop|start [--signal TERM|KILL]
#                                       [--timeout S]
#
#   stop   signal the server's process group (the server and the uvicorn processes it runs;
#          TERM by default, KILL for a crash), SIGKILL what is left after S seconds, and
#          return once none of it runs
#   start  start it as start.sh does (MLflow's authentication on, the same admin and users)
#          and wait up to S seconds (default 120; 0: do not wait) for /health to answer; its
#          pid is recorded in created.txt, so stop.sh ends it
#
# Only servers recorded in DIR/created.txt are signalled, and only while they are still in
# the cluster's head namespace (a recycled PID is never hit).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

usage() {
    echo "usage: mlflow-server.sh --state DIR --how stop|start [--signal TERM|KILL] [--timeout S]"
}
die() { echo "mlflow-server.sh: error: $*" >&2; exit 2; }

STATE=""
HOW=""
SIGNAL=TERM
TIMEOUT=120
while [[ $# -gt 0 ]]; do
    case "$1" in
        --state) [[ $# -ge 2 ]] || die "--state needs a value"; STATE="$2"; shift 2 ;;
        --how) [[ $# -ge 2 ]] || die "--how needs a value"; HOW="$2"; shift 2 ;;
        --signal) [[ $# -ge 2 ]] || die "--signal needs a value"; SIGNAL="$2"; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done
[[ -n "$STATE" && -n "$HOW" ]] || { usage >&2; die "--state and --how are required"; }
[[ "$HOW" == stop || "$HOW" == start ]] || die "--how '$HOW': stop or start"
[[ "$SIGNAL" == TERM || "$SIGNAL" == KILL ]] || die "--signal '$SIGNAL': TERM or KILL"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout '$TIMEOUT': seconds (a non-negative integer)"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces); run with sudo"
CREATED="$STATE/created.txt"
CONF="$STATE/mlflow.conf"
[[ -f "$CREATED" ]] || die "$CREATED not found"
[[ -f "$CONF" ]] || die "$CONF not found (a cluster started by start.sh has one)"

NS=""
HOST=""
PORT=""
while IFS='=' read -r key value; do
    case "$key" in
        ns) NS="$value" ;;
        host) HOST="$value" ;;
        port) PORT="$value" ;;
    esac
done <"$CONF"
[[ -n "$NS" && -n "$HOST" && "$PORT" =~ ^[0-9]+$ ]] || die "$CONF lacks ns, host or port"
ip netns list | awk '{print $1}' | grep -qx "$NS" || die "namespace $NS is gone"

in_ns() { kill -0 "$1" 2>/dev/null && [[ "$(ip netns identify "$1" 2>/dev/null)" == "$2" ]]; }
group_alive() { kill -0 -- "-$1" 2>/dev/null; }   # any process left in process group $1

running_servers() {  # recorded servers whose process group still runs in the head namespace
    local kind pid what ns
    while read -r kind pid what ns _; do
        [[ "$kind" == pid && "$what" == mlflow && "$ns" == "$NS" ]] || continue
        if in_ns "$pid" "$NS" && group_alive "$pid"; then echo "$pid"; fi
    done <"$CREATED"
}

case "$HOW" in
    stop)
        servers=($(running_servers))
        if ((${#servers[@]} == 0)); then echo "no MLflow server of $STATE is running"; exit 0; fi
        # start.sh starts the server with setsid: its pid is its process group's id.
        for pid in "${servers[@]}"; do kill "-$SIGNAL" -- "-$pid" 2>/dev/null || true; done
        deadline=$((SECONDS + TIMEOUT))
        for pid in "${servers[@]}"; do
            while group_alive "$pid"; do
                if ((SECONDS >= deadline)); then kill -KILL -- "-$pid" 2>/dev/null || true; fi
                ((SECONDS < deadline + 10)) || die "process group $pid survived SIGKILL"
                sleep 0.2
            done
        done
        echo "stopped MLflow server ${servers[*]} (SIG$SIGNAL) in $NS"
        ;;
    start)
        servers=($(running_servers))
        ((${#servers[@]} == 0)) || die "an MLflow server of $STATE is running (pid ${servers[*]})"
        if [[ -z "${VIRTUAL_ENV:-}" && -x "$REPO/.venv/bin/mlflow" ]]; then
            PATH="$REPO/.venv/bin:$PATH"
        fi
        command -v mlflow >/dev/null || die "'mlflow' not found on PATH (activate the venv)"
        mkdir -p "$STATE/logs" "$STATE/artifacts"
        # MLflow's authentication is on (cluster/mlflow-auth.sh: the admin's login in
        # $STATE/mlflow_admin.credentials, users in $STATE/mlflow_auth.db). Artifacts are
        # proxied: clients upload and download through the server, never see the path. The Ray
        # token is kept out of the server's environment. MLflow's job executor (GenAI scorers;
        # eight more processes) is not used by searches: left off.
        ip netns exec "$NS" env -u RAY_AUTH_TOKEN -u RAY_AUTH_TOKEN_PATH -u RAY_ADDRESS \
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
            setsid "$REPO/cluster/mlflow-auth.sh" "$STATE" -- \
            mlflow server --app-name basic-auth --host "$HOST" --port "$PORT" --workers 1 \
            --backend-store-uri "sqlite:///$STATE/mlflow.db" \
            --artifacts-destination "$STATE/artifacts" --serve-artifacts \
            </dev/null >>"$STATE/logs/mlflow.log" 2>&1 &
        pid=$!
        disown "$pid"   # it outlives this script; stop.sh (or --how stop) ends it
        echo "pid $pid mlflow $NS" >>"$CREATED"
        echo "$pid" >"$STATE/mlflow.pid"
        if ((TIMEOUT > 0)); then
            deadline=$((SECONDS + TIMEOUT))
            until ip netns exec "$NS" curl -sf --noproxy '*' --max-time 3 \
                "http://$HOST:$PORT/health" >/dev/null 2>&1; do
                if ! kill -0 "$pid" 2>/dev/null; then
                    tail -n 15 "$STATE/logs/mlflow.log" >&2 || true
                    die "the MLflow server exited (log: $STATE/logs/mlflow.log)"
                fi
                ((SECONDS < deadline)) || die "MLflow does not answer after ${TIMEOUT}s"
                sleep 0.5
            done
        fi
        echo "started MLflow server $pid at http://$HOST:$PORT in $NS"
        ;;
esac
