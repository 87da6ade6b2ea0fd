#!/usr/bin/env bash
# Stop a cluster made by start.sh and remove exactly what it recorded in STATE/created.txt:
# its processes, network namespaces, links and Ray temp directory. Nothing else is touched.
#
#   sudo cluster/local/stop.sh --state DIR [--keep-logs] [--grace S]
#
# The MLflow server gets SIGTERM and S seconds (its SQLite store is crash-safe either way); then
# every process left in the recorded namespaces gets SIGKILL, as with `ray stop --force`.
#
# Processes are found per namespace (`ip netns pids`), never by name: `ray stop` would end every
# Ray process on the machine, including other clusters' and other users' local Ray sessions.
# The state directory itself (MLflow database, artifacts, storage, logs) is kept.
set -euo pipefail

usage() { echo "usage: stop.sh --state DIR [--keep-logs] [--grace SECONDS (default 3)]"; }
die() { echo "stop.sh: error: $*" >&2; exit 2; }

STATE=""
KEEP_LOGS=0
GRACE=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --state) [[ $# -ge 2 ]] || die "--state needs a value"; STATE="$2"; shift 2 ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --grace)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--grace needs seconds"
            GRACE="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done
[[ -n "$STATE" ]] || { usage >&2; die "--state is required"; }
CREATED="$STATE/created.txt"
[[ -f "$CREATED" ]] || die "$CREATED not found: nothing recorded to stop"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces); run with sudo"

NAMESPACES=()
LINKS=()
DIRS=()
PIDS=()      # "pid what namespace"
while read -r kind name what ns _; do
    case "$kind" in
        netns) NAMESPACES+=("$name") ;;
        link) LINKS+=("$name") ;;
        dir) DIRS+=("$name") ;;
        pid) PIDS+=("$name ${what:-?} ${ns:-?}") ;;
        ''|'#'*) ;;
        *) echo "stop.sh: ignoring unknown record '$kind $name'" >&2 ;;
    esac
done <"$CREATED"

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
ns_pids() { ns_exists "$1" && ip netns pids "$1" 2>/dev/null || true; }

# The MLflow server first, gracefully (SIGTERM lets it close its database): recorded PIDs are
# signalled only while still inside their namespace, so a recycled PID is never hit.
in_ns() { kill -0 "$1" 2>/dev/null && [[ "$(ip netns identify "$1" 2>/dev/null)" == "$2" ]]; }
graceful=()
for entry in "${PIDS[@]}"; do
    read -r pid what ns <<<"$entry"
    if [[ "$what" == mlflow ]] && in_ns "$pid" "$ns"; then
        kill -TERM "$pid" 2>/dev/null && graceful+=("$entry")
    fi
done
deadline=$((SECONDS + GRACE))
for entry in "${graceful[@]}"; do
    read -r pid what ns <<<"$entry"
    while in_ns "$pid" "$ns" && ((SECONDS < deadline)); do sleep 0.2; done
done

# Then everything still running inside the recorded namespaces gets SIGKILL, as `ray stop
# --force` would give it (workers first, the head last), recorded or started later (trials).
for ((round = 0; round < 20; round++)); do
    left=0
    for ((i = ${#NAMESPACES[@]} - 1; i >= 0; i--)); do
        pids="$(ns_pids "${NAMESPACES[i]}")"
        if [[ -z "$pids" ]]; then continue; fi
        left=1
        kill -KILL $pids 2>/dev/null || true
    done
    ((left)) || break
    sleep 0.25
done

for ns in "${NAMESPACES[@]}"; do
    if ns_exists "$ns"; then
        ip netns del "$ns" || echo "stop.sh: could not delete namespace $ns" >&2
    fi
done
# Deleting a namespace removes the veth pairs inside it; the bridge (and any veth end that is
# left) is removed here.
for ((i = ${#LINKS[@]} - 1; i >= 0; i--)); do
    if ip link show "${LINKS[i]}" >/dev/null 2>&1; then
        ip link del "${LINKS[i]}" || echo "stop.sh: could not delete link ${LINKS[i]}" >&2
    fi
done
if ((!KEEP_LOGS)); then
    for dir in "${DIRS[@]}"; do
        if [[ "$dir" == /tmp/ray-sk* ]]; then rm -rf -- "$dir"; fi
    done
fi

status=0
for ns in "${NAMESPACES[@]}"; do
    ! ns_exists "$ns" || { echo "stop.sh: namespace $ns is still there" >&2; status=1; }
done
for link in "${LINKS[@]}"; do
    if ip link show "$link" >/dev/null 2>&1; then
        echo "stop.sh: link $link is still there" >&2; status=1
    fi
done
if ((status == 0)); then
    echo "stopped: removed ${#NAMESPACES[@]} namespaces and ${#LINKS[@]} links (from $CREATED)"
fi
exit "$status"
