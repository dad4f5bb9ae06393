#!/usr/bin/env bash
# tests/scripts/metrics.sh: the live /metrics of a real `cmesh users` passes
# `promtool check metrics` and carries the series dashboards rely on.
# Env: CMESH_BIN (path of build/cmesh). Needs curl, python3, promtool.
set -euo pipefail

: "${CMESH_BIN:?CMESH_BIN is not set}"
command -v promtool >/dev/null || { echo "metrics.sh: promtool not found" >&2; exit 1; }

dir=$(mktemp -d /tmp/cmesh-metrics-XXXXXX)
# shellcheck source=scripts/proc.sh
. "${CMESH_SRC:?}/scripts/proc.sh"
cleanup() {
    proc_cleanup
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "metrics.sh: FAIL: $*" >&2
    echo "--- server stderr:" >&2
    tail -n 20 "$dir/stderr.log" >&2 || true
    exit 1
}

port=$(free_port)
url="http://127.0.0.1:$port"
"$CMESH_BIN" users --listen "127.0.0.1:$port" --db "$dir/users.db" --access-log off \
    2>"$dir/stderr.log" &
pid=$!
proc_track "$pid"
wait_http "$url/healthz" "$pid" "$dir/stderr.log" || fail "cmesh did not become healthy"

# a few requests, so labelled series exist: a create, an item read, a miss, a list
c() { curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "$@"; }
[[ $(c -X POST -H 'Content-Type: application/json' \
    -d '{"name":"Ann","email":"ann@example.com"}' "$url/users") == 201 ]] || fail "POST /users"
[[ $(c "$url/users/1") == 200 ]] || fail "GET /users/1"
[[ $(c "$url/users/999") == 404 ]] || fail "GET /users/999"
[[ $(c "$url/users") == 200 ]] || fail "GET /users"

curl -fsS --max-time 5 -D "$dir/headers" -o "$dir/metrics.txt" "$url/metrics" || fail "GET /metrics"
grep -qi '^content-type: text/plain' "$dir/headers" || fail "/metrics is not text/plain"

promtool check metrics <"$dir/metrics.txt" || fail "promtool check metrics refused /metrics"

need() {
    grep -Eq "$1" "$dir/metrics.txt" || fail "no line matching /$1/ in /metrics"
}
need '^cmesh_http_requests_total\{[^}]*route="/users/\{id\}"[^}]*code="200"[^}]*\} [1-9]'
need '^cmesh_http_requests_total\{[^}]*route="/users/\{id\}"[^}]*code="404"[^}]*\} [1-9]'
need '^# TYPE cmesh_http_request_duration_seconds histogram$'
need '^cmesh_http_request_duration_seconds_bucket\{[^}]*route="/users/\{id\}"[^}]*le="\+Inf"\} [1-9]'
need '^cmesh_http_request_duration_seconds_count\{[^}]*route="/users/\{id\}"'
need '^cmesh_http_request_duration_seconds_sum\{[^}]*route="/users/\{id\}"'
need '^# TYPE cmesh_http_requests_in_flight gauge$'
need '^cmesh_http_requests_in_flight(\{[^}]*\})? [0-9]'
need '^process_resident_memory_bytes [1-9][0-9]*$'
need '^process_open_fds [1-9][0-9]*$'
need '^process_start_time_seconds [1-9][0-9]*(\.[0-9]+)?$'

# a clean stop: SIGTERM drains and exits 0
kill -TERM "$pid"
for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$pid" 2>/dev/null && fail "still running 15 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
PIDS=() # reaped above: nothing left for cleanup to stop
[[ $rc -eq 0 ]] || fail "exit $rc after SIGTERM"
echo "metrics.sh: ok"
