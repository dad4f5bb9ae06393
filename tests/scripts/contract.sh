#!/usr/bin/env bash
# tests/scripts/contract.sh: lints api/openapi.yaml with Redocly, then starts a real users +
# orders pair (and an orders process whose users service is down, for the 503 case) on free
# loopback ports and runs tests/contract/validate.mjs against them. Run by CTest with
# CMESH_BIN and CMESH_SRC; every process it starts is killed on exit, pass or fail.
set -euo pipefail

: "${CMESH_BIN:?set CMESH_BIN to the cmesh binary}"
: "${CMESH_SRC:?set CMESH_SRC to the repository root}"
CONTRACT="$CMESH_SRC/tests/contract"
READY_WAIT_S=10 # bound on start-up; a healthy process answers /healthz within milliseconds

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-contract.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        # Drain is bounded by --drain-timeout; kill -9 whatever outlives it.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -d "$CONTRACT/node_modules" ]; then
    echo "contract: npm ci in tests/contract"
    (cd "$CONTRACT" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "contract: redocly lint api/openapi.yaml"
# No telemetry and no update check: both would reach for hosts other than the registry.
(cd "$CMESH_SRC" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
    "$CONTRACT/node_modules/.bin/redocly" lint --config redocly.yaml api/openapi.yaml)

# Ports come from the kernel (bind to port 0) so parallel test runs never collide; the
# small window between closing the probe socket and the server binding it is accepted.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start NAME ARGS...: runs cmesh in the background, its stderr kept in TMP/NAME.log.
start() {
    local name=$1
    shift
    "$CMESH_BIN" "$@" --access-log off 2>"$TMP/$name.log" &
    PIDS+=($!)
}

# wait_healthy NAME URL PID: polls /healthz until 200, the process dies, or the bound passes.
wait_healthy() {
    local name=$1 url=$2 pid=$3 deadline=$((SECONDS + READY_WAIT_S))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "contract: $name exited during start-up:" >&2
            cat "$TMP/$name.log" >&2
            return 1
        fi
        if curl -fsS -o /dev/null --max-time 1 "$url/healthz" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "contract: $name not healthy at $url within ${READY_WAIT_S}s:" >&2
    cat "$TMP/$name.log" >&2
    return 1
}

P_USERS=$(free_port)
P_ORDERS=$(free_port)
P_LONELY=$(free_port)
P_DEAD=$(free_port) # nothing listens here: the users service of the lonely orders process

start users users --listen "127.0.0.1:$P_USERS" --db "$TMP/users.db"
wait_healthy users "http://127.0.0.1:$P_USERS" "${PIDS[-1]}"
start orders orders --listen "127.0.0.1:$P_ORDERS" --db "$TMP/orders.db" \
    --users-url "http://127.0.0.1:$P_USERS"
wait_healthy orders "http://127.0.0.1:$P_ORDERS" "${PIDS[-1]}"
start lonely orders --listen "127.0.0.1:$P_LONELY" --db "$TMP/lonely.db" \
    --users-url "http://127.0.0.1:$P_DEAD" --users-timeout 1s
wait_healthy lonely "http://127.0.0.1:$P_LONELY" "${PIDS[-1]}"

echo "contract: validate.mjs against users :$P_USERS, orders :$P_ORDERS"
rc=0
USERS_URL="http://127.0.0.1:$P_USERS" ORDERS_URL="http://127.0.0.1:$P_ORDERS" \
    ORDERS_NOUSERS_URL="http://127.0.0.1:$P_LONELY" \
    OPENAPI="$CMESH_SRC/api/openapi.yaml" node "$CONTRACT/validate.mjs" || rc=$?
if [ $rc -ne 0 ]; then
    for name in users orders lonely; do
        echo "--- $name stderr (last 20 lines)" >&2
        tail -n 20 "$TMP/$name.log" >&2 || true
    done
fi
exit $rc
