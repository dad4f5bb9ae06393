#!/usr/bin/env bash
# tests/scripts/make_run.sh: `make run` (scripts/run.sh) for real: it waits until both
# services answer, a terminal hangup (SIGHUP) stops both gracefully (each drains and
# exits, the script exits 0), and a second copy on the same ports fails at once.
# Env: CMESH_BIN, CMESH_SRC. Needs curl, python3.
set -euo pipefail

: "${CMESH_BIN:?CMESH_BIN is not set}"
dir=$(mktemp -d /tmp/cmesh-makerun-XXXXXX)
# shellcheck source=scripts/proc.sh
. "${CMESH_SRC:?}/scripts/proc.sh"
run_pids=()
cleanup() {
    local p
    for p in "${run_pids[@]+"${run_pids[@]}"}"; do
        for c in $(pgrep -P "$p" 2>/dev/null); do proc_track "$c"; done
        proc_track "$p"
    done
    proc_cleanup
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "make_run.sh: FAIL: $*" >&2
    for f in "$dir"/*.out; do echo "--- $f:" >&2; tail -n 20 "$f" >&2 || true; done
    exit 1
}

# wait_exit PID SECONDS: 0 and the exit status in $rc when PID ended in time
wait_exit() {
    local pid=$1
    for _ in $(seq $(($2 * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && return 1
    rc=0
    wait "$pid" || rc=$?
}

users_port=$(free_port)
orders_port=$(free_port)
export USERS_PORT=$users_port ORDERS_PORT=$orders_port
cd "$dir"
bash "$CMESH_SRC/scripts/run.sh" "$CMESH_BIN" >"$dir/first.out" 2>&1 &
first=$!
run_pids+=("$first")
for _ in $(seq 100); do
    grep -q 'cmesh is up' "$dir/first.out" && break
    kill -0 "$first" 2>/dev/null || fail "run.sh exited before the services were up"
    sleep 0.1
done
grep -q 'cmesh is up' "$dir/first.out" || fail "run.sh did not say it is up within 10 s"
[ -f "$dir/data/users.db" ] || fail "no data/users.db under the working directory"

c() { curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "$@"; }
[[ $(c -X POST -H 'Content-Type: application/json' -d '{"name":"Ann","email":"ann@example.com"}' \
    "http://127.0.0.1:$users_port/users") == 201 ]] || fail "POST /users through make run's users"
[[ $(c -X POST -H 'Content-Type: application/json' -d '{"userId":1}' \
    "http://127.0.0.1:$orders_port/orders") == 201 ]] || fail "POST /orders (orders -> users)"

# a second copy on the same ports must fail at once, and leave the first serving
bash "$CMESH_SRC/scripts/run.sh" "$CMESH_BIN" >"$dir/second.out" 2>&1 &
second=$!
run_pids+=("$second")
wait_exit "$second" 15 || fail "a second make run on ports in use is still running"
[[ $rc -ne 0 ]] || fail "a second make run on ports in use exited 0"
grep -qi 'address already in use' "$dir/second.out" || fail "the second make run did not say why"
[[ $(c "http://127.0.0.1:$users_port/users/1") == 200 ]] || fail "first users stopped serving"

# a terminal hangup: both services drain and exit, the script exits 0
kill -HUP "$first"
wait_exit "$first" 15 || fail "run.sh still running 15 s after SIGHUP"
[[ $rc -eq 0 ]] || fail "run.sh exited $rc after SIGHUP"
[[ $(grep -c 'drained, exiting' "$dir/first.out") -eq 2 ]] || fail "not both services drained"
! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$users_port/healthz" ||
    fail "users still answers after the hangup"
run_pids=()
echo "make_run.sh: ok"
