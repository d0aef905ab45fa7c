#!/usr/bin/env bash
# A whole identifier hierarchy on loopback, for trying delegation out:
#
#   top  top-level node for 88       http://127.0.0.1:8100
#   a    secondary node for 88.118   http://127.0.0.1:8101
#   b    secondary node for 88.200   http://127.0.0.1:8102
#
# Usage: deploy/local-hierarchy.sh start|stop|status
#
# Data, logs and PID files go under ./run/hierarchy/ (relative to where it is run).
# Every node's admin secret is IDNODE_ADMIN_SECRET; the secondary nodes also use it as the
# secret of the identity the top-level node grants them. The default below is for this
# demo only: anyone who reads this file knows it. The idnode command is the one on PATH,
# or $IDNODE when set. "start" is idempotent: nodes already running are left alone.
set -euo pipefail

RUN_DIR="./run/hierarchy"
SECRET="${IDNODE_ADMIN_SECRET:-demo-secret-do-not-use-in-production}"
IDNODE="${IDNODE:-$(command -v idnode || true)}"
TOP="http://127.0.0.1:8100"

die() { echo "local-hierarchy: $*" >&2; exit 1; }

running() {  # running NAME: is the node's process alive?
    local pidfile="$RUN_DIR/$1.pid"
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_healthy() {  # wait_healthy NAME PORT
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then
            return 0
        fi
        running "$1" || die "node $1 exited; see $RUN_DIR/$1.log"
        sleep 0.1
    done
    die "node $1 did not start in 10 s; see $RUN_DIR/$1.log"
}

start_node() {  # start_node NAME PORT PREFIX [ARGS...]
    local name=$1 port=$2 prefix=$3
    shift 3
    if running "$name"; then
        echo "$name: already running (pid $(cat "$RUN_DIR/$name.pid")), prefix $prefix on port $port"
        return 0
    fi
    mkdir -p "$RUN_DIR/$name"
    IDNODE_ADMIN_SECRET="$SECRET" IDNODE_UPSTREAM_SECRET="$SECRET" nohup "$IDNODE" serve \
        --listen "127.0.0.1:$port" --handle-listen "127.0.0.1:$((port - 8100 + 2641))" \
        --data-dir "$RUN_DIR/$name" --node-prefix "$prefix" "$@" \
        >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
    wait_healthy "$name" "$port"
    echo "$name: started (pid $(cat "$RUN_DIR/$name.pid")), prefix $prefix on http://127.0.0.1:$port" \
        "and handle://127.0.0.1:$((port - 8100 + 2641))"
}

grant() {  # grant PREFIX: the top-level admin lets 300:0.NA/PREFIX publish PREFIX and below
    local prefix=$1 body status
    body=$(cat <<JSON
{"values": [
  {"index": 100, "type": "HS_ADMIN",
   "data": {"format": "admin", "value": {"handle": "0.NA/$prefix", "index": 300, "permissions": "111111111111"}}},
  {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": "$SECRET"}}
]}
JSON
)
    # Only those two indexes: the site value the secondary node published is kept.
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
        -u "300%3A0.NA/88:$SECRET" --data "$body" "$TOP/api/handles/0.NA/$prefix?index=100&index=300")
    [[ "$status" == 200 || "$status" == 201 ]] || die "granting 0.NA/$prefix at the top-level node: HTTP $status"
}

start() {
    [[ -n "$IDNODE" && -x "$IDNODE" ]] || die "no idnode command on PATH; install it (pip install -e .) or set IDNODE"
    mkdir -p "$RUN_DIR"
    start_node top 8100 88 --role top-level
    grant 88.118
    grant 88.200
    # Every node is on loopback, where delegation does not go unless allowed: a real node
    # leaves delegation_allow empty (or names the private network its enterprises are on).
    start_node a 8101 88.118 --upstream "$TOP" --delegation-allow 127.0.0.0/8
    start_node b 8102 88.200 --upstream "$TOP" --delegation-allow 127.0.0.0/8
}

stop() {
    local name pid
    for name in a b top; do
        if running "$name"; then
            pid=$(cat "$RUN_DIR/$name.pid")
            kill -TERM "$pid"
            for _ in $(seq 1 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid"
            fi
            echo "$name: stopped"
        fi
        rm -f "$RUN_DIR/$name.pid"
    done
}

status() {
    local name
    for name in top a b; do
        if running "$name"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"; else echo "$name: stopped"; fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
