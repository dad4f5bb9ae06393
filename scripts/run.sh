#!/usr/bin/env bash
# make run: until the control plane exists, starts one users and one orders instance in
# the foreground on fixed ports with their databases under data/, prints their URLs,
# and stops both (gracefully) on Ctrl-C.
set -euo pipefail
bin=${1:-build/cmesh}
users_port=${USERS_PORT:-7001}
orders_port=${ORDERS_PORT:-7002}
mkdir -p data

"$bin" users --listen "127.0.0.1:$users_port" --db data/users.db &
users_pid=$!
"$bin" orders --listen "127.0.0.1:$orders_port" --db data/orders.db \
    --users-url "http://127.0.0.1:$users_port" &
orders_pid=$!

stop() {
    kill -TERM "$users_pid" "$orders_pid" 2>/dev/null || true
    wait "$users_pid" "$orders_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT

cat <<MSG
cmesh is up (Ctrl-C stops it):
  users   http://127.0.0.1:$users_port/users
  orders  http://127.0.0.1:$orders_port/orders
  health  /healthz /readyz /metrics on each
MSG
# exits when either service exits; the trap stops the other
wait -n "$users_pid" "$orders_pid"
