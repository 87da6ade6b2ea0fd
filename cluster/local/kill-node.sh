#!/usr/bin/env bash
# Fail one worker node of a cluster made by start.sh (for fault-tolerance tests).
#
#   sudo cluster/local/kill-node.sh --state DIR --worker K [--how kill|down|up]
#
#   kill  SIGKILL every process inside the worker's namespace (a crashed machine); default
#   down  take the worker's network link down (a partitioned machine; processes keep running)
#   up    bring the link back up
#
# Only the namespace start.sh recorded for worker K is touched.
set -euo pipefail

usage() { echo "usage: kill-node.sh --state DIR --worker K [--how kill|down|up]"; }
die() { echo "kill-node.sh: error: $*" >&2; exit 2; }

STATE=""
WORKER=""
HOW=kill
while [[ $# -gt 0 ]]; do
    case "$1" in
        --state) [[ $# -ge 2 ]] || die "--state needs a value"; STATE="$2"; shift 2 ;;
        --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; WORKER="$2"; shift 2 ;;
        --how) [[ $# -ge 2 ]] || die "--how needs a value"; HOW="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done
[[ -n "$STATE" && -n "$WORKER" ]] || { usage >&2; die "--state and --worker are required"; }
[[ "$WORKER" =~ ^[1-9][0-9]*$ ]] || die "--worker '$WORKER': a worker number (1, 2, ...)"
[[ "$HOW" == kill || "$HOW" == down || "$HOW" == up ]] || die "--how '$HOW': kill, down or up"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces); run with sudo"
CREATED="$STATE/created.txt"
[[ -f "$CREATED" ]] || die "$CREATED not found"

NS=""
while read -r kind name _; do
    if [[ "$kind" == netns && "$name" =~ -w${WORKER}$ ]]; then NS="$name"; fi
done <"$CREATED"
[[ -n "$NS" ]] || die "no worker $WORKER recorded in $CREATED"
ip netns list | awk '{print $1}' | grep -qx "$NS" || die "namespace $NS is gone"

case "$HOW" in
    kill)
        pids="$(ip netns pids "$NS")"
        [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while [[ -n "$(ip netns pids "$NS")" ]]; do
            ((SECONDS < deadline)) || die "processes still alive in $NS after SIGKILL"
            sleep 0.2
        done
        echo "killed $(wc -w <<<"$pids") processes in $NS"
        ;;
    down) ip -n "$NS" link set "$NS-p" down; echo "link $NS-p down" ;;
    up) ip -n "$NS" link set "$NS-p" up; echo "link $NS-p up" ;;
esac
