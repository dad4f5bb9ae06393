#!/usr/bin/env bash
# tests/scripts/dashboard.sh: the dashboard in a real browser. Starts `cmesh up` with a
# small spec (users x2, orders x1) on free loopback ports, runs tests/browser/dashboard.mjs
# (playwright-core driving Debian's headless Chromium: instances shown, one kill -9'd and
# seen going away and coming back, its restart event, charts with data, a late page with
# history), and keeps its screenshots in BUILD/artifacts/. Run by CTest with CMESH_BIN and
# CMESH_SRC; the control plane and every instance it started are stopped by pid on exit.
set -euo pipefail

: "${CMESH_BIN:?set CMESH_BIN to the cmesh binary}"
: "${CMESH_SRC:?set CMESH_SRC to the repository root}"
BROWSER="$CMESH_SRC/tests/browser"
ARTIFACTS="$(cd "$(dirname "$CMESH_BIN")" && pwd)/artifacts"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-dashboard.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$CMESH_SRC/scripts/proc.sh"
INSTANCE_PIDS=()
cleanup() {
    proc_cleanup # cmesh up: SIGTERM stops every instance gracefully
    # whatever outlived it (a control plane killed after its 5 s) is stopped by pid
    # (only a process whose command line names this test's directory: a pid reused since
    # is someone else's)
    for pid in "${INSTANCE_PIDS[@]+"${INSTANCE_PIDS[@]}"}"; do
        if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$TMP"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$CHROMIUM" ]; then
    echo "dashboard: $CHROMIUM not found; install Debian's chromium (scripts/deps.sh)" >&2
    exit 1
fi
if [ ! -d "$BROWSER/node_modules/playwright-core" ]; then
    echo "dashboard: npm ci in tests/browser"
    (cd "$BROWSER" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Instance i listens on its service's base + i and each service owns 64 ports, so the
# ports are a block: control at B, users from B+64, orders from B+128, below the kernel's
# ephemeral range (32768+) where free_port's and every outgoing connection's ports come
# from (the integration suites' blocks are 20000-32999).
BASE=$(python3 -c '
import random, socket
for _ in range(200):
    base = random.randrange(12000, 19800, 192)
    try:
        for p in (base, base + 64, base + 65, base + 128):
            # SO_REUSEADDR, as the servers bind: old connections in TIME-WAIT do not count
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    print(base); break
else:
    raise SystemExit("no free block of ports")')
P_CONTROL=$BASE
P_USERS=$((BASE + 64)) # users/0, users/1
P_ORDERS=$((BASE + 128))
cat >"$TMP/cmesh.yaml" <<EOF
control:
  listen: 127.0.0.1:$P_CONTROL
  state_dir: state
services:
  users:
    command: users
    instances: 2
    listen: 127.0.0.1:$P_USERS
    args: [--db, users.db]
    # rise 40: a restarted instance stays "starting" for 40 probes 50 ms apart (probe.c's
    # start-up period), 2 s at least: what the test looks for on the page
    readiness: { path: /readyz, interval: 1s, timeout: 1s, rise: 40, fall: 3 }
    drain_timeout: 2s
  orders:
    command: orders
    instances: 1
    listen: 127.0.0.1:$P_ORDERS
    args: [--db, orders.db, --users-registry, "{registry}"]
    readiness: { path: /readyz, interval: 1s, timeout: 1s, fall: 3 }
    drain_timeout: 2s
EOF

echo "dashboard: cmesh up on control :$P_CONTROL (users :$P_USERS+, orders :$P_ORDERS)"
"$CMESH_BIN" up --config "$TMP/cmesh.yaml" >"$TMP/up.log" 2>&1 &
proc_track $!
UP_PID=$!
wait_http "http://127.0.0.1:$P_CONTROL/v1/ready" "$UP_PID" "$TMP/up.log" 60
mapfile -t INSTANCE_PIDS < <(curl -fsS "http://127.0.0.1:$P_CONTROL/v1/status" |
    python3 -c 'import json, sys
for s in json.load(sys.stdin)["services"]:
    for i in s["instances"]:
        print(i["pid"])')

rc=0
CONTROL_URL="http://127.0.0.1:$P_CONTROL" KILL=users/1 ARTIFACTS="$ARTIFACTS" CHROMIUM="$CHROMIUM" \
    LOAD_URLS="http://127.0.0.1:$P_USERS/users,http://127.0.0.1:$((P_USERS + 1))/users/1,http://127.0.0.1:$P_ORDERS/orders" \
    timeout 240 node "$BROWSER/dashboard.mjs" || rc=$?
# the restarted users/1 has a new pid: add it to what cleanup stops
mapfile -t -O "${#INSTANCE_PIDS[@]}" INSTANCE_PIDS < <(curl -fsS --max-time 2 \
    "http://127.0.0.1:$P_CONTROL/v1/status" 2>/dev/null | python3 -c 'import json, sys
for s in json.load(sys.stdin)["services"]:
    for i in s["instances"]:
        print(i["pid"])' 2>/dev/null || true)
if [ $rc -ne 0 ]; then
    echo "--- cmesh up (last 40 lines)" >&2
    tail -n 40 "$TMP/up.log" >&2 || true
fi
exit $rc
