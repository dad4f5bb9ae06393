#!/usr/bin/env bash
# make run: until the control plane exists, starts one users and one orders instance in
# the foreground on fixed ports with their databases under data/, waits until both
# answer, prints their URLs, and stops both gracefully (SIGTERM, drain) on Ctrl-C, on
# SIGTERM and on a terminal hangup (SIGHUP). Exits non-zero when either fails to start
# (for example because its port is already in use) or dies.
set -euo pipefail
bin=${1:-build/cmesh}
users_port=${USERS_PORT:-7001}
orders_port=${ORDERS_PORT:-7002}
mkdir -p data

users_pid= orders_pid=
stop() {
    trap - INT TERM HUP EXIT
    local pids=($users_pid $orders_pid)
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
# a signal stops both, then exits 0: the user asked for it
trap 'stop; exit 0' INT TERM HUP

"$bin" users --listen "127.0.0.1:$users_port" --db data/users.db &
users_pid=$!
"$bin" orders --listen "127.0.0.1:$orders_port" --db data/orders.db \
    --users-url "http://127.0.0.1:$users_port" &
orders_pid=$!

# wait until both answer (or one of them exits, e.g. its port is taken)
for _ in $(seq 100); do
    for pid in $users_pid $orders_pid; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            echo "make run: a service exited at start (status $rc); see its message above" >&2
            exit 1
        fi
    done
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$users_port/healthz" 2>/dev/null &&
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$orders_port/healthz" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

cat <<MSG
cmesh is up (Ctrl-C stops it):
  users   http://127.0.0.1:$users_port/users
  orders  http://127.0.0.1:$orders_port/orders
  health  /healthz /readyz /metrics on each
MSG
# runs until either service exits (then the other is stopped and the status is its)
rc=0
wait -n "$users_pid" "$orders_pid" || rc=$?
echo "make run: a service exited (status $rc); stopping the other" >&2
exit $((rc == 0 ? 1 : rc))
