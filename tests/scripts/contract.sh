#!/usr/bin/env bash
# tests/scripts/contract.sh: lints api/openapi.yaml with Redocly, then starts a real users +
# orders pair (and an orders process whose users service is down, for the 503 case) on free
# loopback ports and runs tests/contract/validate.mjs against them. Run by CTest with
# CMESH_BIN and CMESH_SRC; every process it starts is killed on exit, pass or fail.
set -euo pipefail

: "${CMESH_BIN:?set CMESH_BIN to the cmesh binary}"
: "${CMESH_SRC:?set CMESH_SRC to the repository root}"
CONTRACT="$CMESH_SRC/tests/contract"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-contract.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$CMESH_SRC/scripts/proc.sh"
cleanup() {
    proc_cleanup
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

# PORT=P start NAME ARGS...: runs cmesh in the background (stderr in TMP/NAME.log) and
# waits until it answers /healthz on port P.
start() {
    local name=$1
    shift
    "$CMESH_BIN" "$@" --access-log off 2>"$TMP/$name.log" &
    proc_track $!
    wait_http "http://127.0.0.1:$PORT/healthz" $! "$TMP/$name.log"
}

P_USERS=$(free_port)
P_ORDERS=$(free_port)
P_LONELY=$(free_port)
P_DEAD=$(free_port) # nothing listens here: the users service of the lonely orders process

PORT=$P_USERS start users users --listen "127.0.0.1:$P_USERS" --db "$TMP/users.db"
PORT=$P_ORDERS start orders orders --listen "127.0.0.1:$P_ORDERS" --db "$TMP/orders.db" \
    --users-url "http://127.0.0.1:$P_USERS"
PORT=$P_LONELY start lonely orders --listen "127.0.0.1:$P_LONELY" --db "$TMP/lonely.db" \
    --users-url "http://127.0.0.1:$P_DEAD" --users-timeout 1s

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
