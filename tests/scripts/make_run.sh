#!/usr/bin/env bash
# tests/scripts/make_run.sh: `make run` (scripts/run.sh → cmesh up) for real, on the
# shipped cmesh.yaml with its ports moved to free ones: it waits until every instance is
# ready and prints a curl line whose token the gateway accepts; a second copy fails at
# once with "address already in use" and leaves the first serving; SIGHUP to cmesh up
# reloads cmesh.yaml (the same file: nothing is replaced, the system keeps serving); a
# terminal hangup of run.sh stops everything gracefully and the script exits 0 with no
# process left.
# Env: CMESH_BIN, CMESH_SRC. Needs curl.
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
    # whatever the system left (every instance carries CMESH_STATE=its state dir)
    for e in /proc/[0-9]*/environ; do
        if tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "CMESH_STATE=$dir/data/state"; then
            p=${e#/proc/}
            kill -KILL "${p%/environ}" 2>/dev/null || true
        fi
    done
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

left() {
    local n=0 e
    for e in /proc/[0-9]*/environ; do
        tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "CMESH_STATE=$dir/data/state" && n=$((n + 1))
    done
    echo "$n"
}

# the shipped file with free ports: a block of 64 for each service, below the ephemeral
# range so no other test's port lands in it
block=$((20000 + (RANDOM % 40) * 320))
sed -e "s/127.0.0.1:9000/127.0.0.1:$block/" -e "s/127.0.0.1:8080/127.0.0.1:$((block + 1))/" \
    -e "s/127.0.0.1:7001/127.0.0.1:$((block + 64))/" -e "s/127.0.0.1:7101/127.0.0.1:$((block + 128))/" \
    "$CMESH_SRC/cmesh.yaml" >"$dir/cmesh.yaml"
gw=127.0.0.1:$((block + 1))
export CMESH_CONFIG=$dir/cmesh.yaml
cd "$dir"
bash "$CMESH_SRC/scripts/run.sh" "$CMESH_BIN" >"$dir/first.out" 2>&1 &
first=$!
run_pids+=("$first")
for _ in $(seq 300); do
    grep -q 'cmesh is up (Ctrl-C' "$dir/first.out" && break
    kill -0 "$first" 2>/dev/null || fail "run.sh exited before the system was up"
    sleep 0.1
done
grep -q 'cmesh is up (Ctrl-C' "$dir/first.out" || fail "run.sh did not say it is up within 30 s"
[ -f "$dir/data/users.db" ] || fail "no data/users.db next to cmesh.yaml"
[[ $(left) -eq 5 ]] || fail "expected 5 instances (2 users, 2 orders, the gateway), found $(left)"

# the printed curl line works as it is, through the gateway with its token
line=$(grep -o 'curl -H "Authorization: Bearer [^"]*" http://[^ ]*' "$dir/first.out") ||
    fail "no curl line printed"
token=$(sed -e 's/.*Bearer //' -e 's/".*//' <<<"$line")
c() { curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "$@"; }
[[ $(eval "${line/curl /curl -sS -o /dev/null --max-time 5 -w '%{http_code}' }") == 200 ]] ||
    fail "the printed curl line did not answer 200"
[[ $(c -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"Ann","email":"ann@example.com"}' "http://$gw/users") == 201 ]] ||
    fail "POST /users through the gateway"
[[ $(c -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"userId":1}' "http://$gw/orders") == 201 ]] || fail "POST /orders (orders -> users)"
[[ $(c "http://$gw/users") == 401 ]] || fail "the shipped gateway must require a token"

# a second copy of the same system must fail at once, and leave the first serving
bash "$CMESH_SRC/scripts/run.sh" "$CMESH_BIN" >"$dir/second.out" 2>&1 &
second=$!
run_pids+=("$second")
wait_exit "$second" 15 || fail "a second make run is still running"
[[ $rc -ne 0 ]] || fail "a second make run exited 0"
grep -qi 'address .*already in use' "$dir/second.out" || fail "the second make run did not say why"
[[ $(c -H "Authorization: Bearer $token" "http://$gw/users/1") == 200 ]] ||
    fail "the first system stopped serving"
[[ $(left) -eq 5 ]] || fail "the second make run started or stopped instances"

# SIGHUP to cmesh up itself: a reload (nginx's meaning), not a stop; the same file
# changes nothing
up_pid=$(pgrep -P "$first" | head -n 1)
[ -n "$up_pid" ] || fail "no cmesh up under run.sh"
users0=$(curl -sS --max-time 5 "http://127.0.0.1:$block/v1/services/users" | grep -o '"pid":[0-9]*' | head -n 1)
kill -HUP "$up_pid"
for _ in $(seq 100); do
    grep -q 'control: reloaded' "$dir/first.out" && break
    sleep 0.1
done
grep -q 'control: reloaded' "$dir/first.out" || fail "SIGHUP to cmesh up did not reload"
kill -0 "$up_pid" 2>/dev/null || fail "cmesh up stopped on SIGHUP"
[[ $(c -H "Authorization: Bearer $token" "http://$gw/users/1") == 200 ]] ||
    fail "the system stopped serving after the reload"
[[ $(curl -sS --max-time 5 "http://127.0.0.1:$block/v1/services/users" | grep -o '"pid":[0-9]*' | head -n 1) == "$users0" ]] ||
    fail "a reload of the same file replaced an instance"
[[ $(left) -eq 5 ]] || fail "the reload started or stopped instances"

# a terminal hangup of run.sh: everything drains and exits, the script exits 0
kill -HUP "$first"
wait_exit "$first" 30 || fail "run.sh still running 30 s after SIGHUP"
[[ $rc -eq 0 ]] || fail "run.sh exited $rc after SIGHUP"
grep -q 'every instance stopped' "$dir/first.out" || fail "cmesh up did not stop its instances"
[[ $(left) -eq 0 ]] || fail "$(left) processes left after the hangup"
! curl -s -o /dev/null --max-time 1 "http://$gw/healthz" || fail "the gateway still answers"
run_pids=()
echo "make_run.sh: ok"
