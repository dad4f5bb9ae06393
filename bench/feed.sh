#!/usr/bin/env bash
# bench/feed.sh: the transactional outbox and its feed under a write load. One `cmesh users`
# (1 worker, cpu 0) takes wrk POST /users (durable creates, each writing user.created in
# its transaction); two consumers follow its GET /events long-poll feed meanwhile:
#   feed-follower  a python3 client (keep-alive, limit=1000, wait=5s): events/s it
#                  received during the load, and its lag (head - cursor) when wrk ended
#   feed-orders    a real `cmesh orders --users-url` applying each event with its durable
#                  cursor: the lag of GET /orders/consistency when wrk ended, and the ms
#                  until it was 0
# Prints the rows; appends "name events_per_s lag_at_end catchup_ms creates_per_s" to
# $FEED_ROWS_OUT when set (bench/run.sh).
# Usage: bench/feed.sh [path/to/cmesh]   env: BENCH_DURATION (10s) BENCH_CONNECTIONS (50)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-50}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-feed.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    proc_cleanup
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SRV_PIN=()
WRK_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SRV_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c 1)
fi

UP=$(free_port)
OP=$(free_port)
"${SRV_PIN[@]}" "$BIN" users --listen "127.0.0.1:$UP" --db "$TMP/users.db" --workers 1 \
    --access-log off --drain-timeout 2s 2>>"$TMP/users.stderr" &
USERS_PID=$!
proc_track "$USERS_PID"
wait_http "http://127.0.0.1:$UP/healthz" "$USERS_PID" "$TMP/users.stderr"
"${WRK_PIN[@]}" "$BIN" orders --listen "127.0.0.1:$OP" --db "$TMP/orders.db" --workers 1 \
    --users-url "http://127.0.0.1:$UP" --access-log off --drain-timeout 2s \
    2>>"$TMP/orders.stderr" &
ORDERS_PID=$!
proc_track "$ORDERS_PID"
wait_http "http://127.0.0.1:$OP/healthz" "$ORDERS_PID" "$TMP/orders.stderr"

# The follower: counts events until $TMP/stop exists, notes its cursor at that moment,
# then prints "events seconds cursor_at_stop".
"${WRK_PIN[@]}" python3 - "$UP" "$TMP/stop" >"$TMP/follower.out" 2>"$TMP/follower.err" <<'PY' &
import http.client, json, os, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
after, n, first = 0, 0, None
while not os.path.exists(stop):
    c.request("GET", "/events?after=%d&limit=1000&wait=1s" % after)
    page = json.loads(c.getresponse().read())
    if page["events"] and first is None:
        first = time.monotonic()
    n += len(page["events"])
    after = page["last"]
end = time.monotonic()
print(n, "%.3f" % (end - first if first else 0), after)
PY
FOLLOWER_PID=$!
proc_track "$FOLLOWER_PID"

"${WRK_PIN[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$ROOT/bench/post_users.lua" \
    "http://127.0.0.1:$UP/users" -- "feed$RANDOM" >"$TMP/wrk.txt" 2>&1 || true
touch "$TMP/stop"
HEAD=$(curl -sS "http://127.0.0.1:$UP/events?after=0&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["head"])')
CONS=$(curl -sS "http://127.0.0.1:$OP/orders/consistency")
wait "$FOLLOWER_PID" || true
CREATES=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk.txt")
read -r EVENTS SECS CURSOR <"$TMP/follower.out" || { cat "$TMP/follower.err" >&2; exit 1; }
FOLLOW_RATE=$(awk -v n="$EVENTS" -v s="$SECS" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
FOLLOW_LAG=$((HEAD - CURSOR))
ORDERS_CURSOR=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cursor"])' "$CONS")
ORDERS_LAG=$((HEAD - ORDERS_CURSOR))
# orders catching up: poll its cursor until it reaches the head (at most 60 s)
T0=$(date +%s%N)
CATCHUP=-1
[ "$ORDERS_LAG" -le 0 ] && CATCHUP=0
for _ in $(seq 600); do
    [ "$CATCHUP" = 0 ] && break
    c=$(curl -sS "http://127.0.0.1:$OP/orders/consistency" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])')
    if [ "$c" -ge "$HEAD" ]; then
        CATCHUP=$((($(date +%s%N) - T0) / 1000000))
        break
    fi
    sleep 0.1
done
ORDERS_RATE=$(awk -v n="$ORDERS_CURSOR" -v d="$DURATION" 'BEGIN { sub(/s$/, "", d); printf "%.0f", (d > 0 ? n / d : 0) }')

printf "\n%-14s %12s %12s %12s %12s\n" name events/s lag_at_end catchup_ms creates/s
printf "%-14s %12s %12s %12s %12.0f\n" feed-follower "$FOLLOW_RATE" "$FOLLOW_LAG" - "$CREATES"
printf "%-14s %12s %12s %12s %12.0f\n" feed-orders "$ORDERS_RATE" "$ORDERS_LAG" "$CATCHUP" "$CREATES"
echo "feed: $HEAD events written; the follower read $EVENTS"
if [ -n "${FEED_ROWS_OUT:-}" ]; then
    echo "feed-follower $FOLLOW_RATE $FOLLOW_LAG - $CREATES" >>"$FEED_ROWS_OUT"
    echo "feed-orders $ORDERS_RATE $ORDERS_LAG $CATCHUP $CREATES" >>"$FEED_ROWS_OUT"
fi
