#!/usr/bin/env bash
# bench/rollout.sh: a rollout under load. A system of 4 users instances behind the gateway
# (readiness every 1 s, as the shipped cmesh.yaml) serves wrk (-t1 -cROLLOUT_CONNECTIONS,
# GET /users?limit=1 through the gateway) for ROLLOUT_WINDOW seconds; 2 s in,
# `cmesh rollout users` replaces the 4 instances (max surge 1, max unavailable 0: one new
# instance, then each old one leaves only once its replacement is ready and routed).
#   rollout-4   the rollout's duration (the control plane's started_ms to finished_ms),
#               wrk's requests and its errors: non-2xx answers plus socket errors (target
#               0). Anchor: a Kubernetes rolling update gives 502s unless a preStop sleep
#               outlasts the load balancer's update (kubernetes/kubernetes#106476).
# Nothing is pinned. Appends "rollout-4 duration_ms requests non2xx socket_errors state" to
# $ROLLOUT_ROWS_OUT when set (bench/run.sh); a row that could not be measured is "rollout-4 -".
# Usage: bench/rollout.sh [path/to/cmesh]
#   env: ROLLOUT_WINDOW (20, seconds) ROLLOUT_CONNECTIONS (50) ROLLOUT_KEEP=1 (keep the dir)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WINDOW=${ROLLOUT_WINDOW:-20}
CONNS=${ROLLOUT_CONNECTIONS:-50}

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "rollout: $tool not found; run make deps" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "rollout: $BIN is not an executable; build first" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-rollout.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    timeout 60 "$BIN" down --config "$TMP/cmesh.yaml" >>"$TMP/down.log" 2>&1 || true
    proc_cleanup
    if [ "${ROLLOUT_KEEP:-0}" = 1 ]; then
        echo "rollout: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

row_out()
{
    [ -n "${ROLLOUT_ROWS_OUT:-}" ] && echo "$*" >>"$ROLLOUT_ROWS_OUT"
    return 0
}

# three bases: control, gateway, users (whose 64-port range holds the surge at base + 4)
mapfile -t ports < <(python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
bases = []
while len(bases) < 3:
    b = random.randrange(20000, 60000)
    if any(abs(b - o) < 64 for o in bases):
        continue
    if all(free(b + i) for i in range(6)):
        bases.append(b)
print("\n".join(map(str, bases)))
PY
)
cp=${ports[0]} gp=${ports[1]} up=${ports[2]}
cat >"$TMP/cmesh.yaml" <<EOF
control:
  listen: 127.0.0.1:$cp
  state_dir: state
services:
  users:
    command: users
    instances: 4
    listen: 127.0.0.1:$up
    args: [--db, users.db, --access-log, 'off']
    readiness: { path: /readyz, interval: 1s, timeout: 1s, fall: 3 }
    drain_timeout: 5s
gateway:
  listen: 127.0.0.1:$gp
  routes:
    - prefix: /users
      service: users
EOF
"$BIN" up --config "$TMP/cmesh.yaml" >>"$TMP/up.log" 2>&1 &
UP_PID=$!
proc_track "$UP_PID"
if ! wait_http "http://127.0.0.1:$cp/v1/ready" "$UP_PID" "$TMP/up.log" 60; then
    row_out "rollout-4 -"
    exit 0
fi
echo "rollout: 4 users instances up (control :$cp, gateway :$gp); wrk -c$CONNS for ${WINDOW}s"
wrk -t1 -c"$CONNS" -d"${WINDOW}s" "http://127.0.0.1:$gp/users?limit=1" >"$TMP/wrk.txt" 2>&1 &
W=$!
proc_track "$W"
sleep 2
"$BIN" rollout users --config "$TMP/cmesh.yaml" >"$TMP/rollout.txt" 2>&1 || true
cat "$TMP/rollout.txt"
wait "$W" || true
status=$(curl -fsS "http://127.0.0.1:$cp/v1/status" || echo '{}')
row=$(python3 - "$TMP/wrk.txt" "$status" <<'PY'
import json, re, sys
wrk = open(sys.argv[1]).read()
st = json.loads(sys.argv[2])
ro = next((s.get("rollout") for s in st.get("services", []) if s["name"] == "users"), None)
m = re.search(r"(\d+) requests in", wrk)
if not ro or not m or not ro.get("finished_ms"):
    print("-")
    sys.exit(0)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
errs = sum(int(x) for x in sock.groups()) if sock else 0
print(ro["finished_ms"] - ro["started_ms"], m.group(1), non2xx.group(1) if non2xx else 0, errs,
      ro["state"])
PY
)
row_out "rollout-4 $row"
python3 - "$row" <<'PY'
import sys
v = sys.argv[1].split()
print("\n    %-12s %s" % ("name", "result"))
if len(v) < 5:
    print("    %-12s not measured" % "rollout-4")
else:
    print("    %-12s %s: %s ms for 4 instances; %s requests, %s non-2xx, %s socket errors (target 0)"
          % ("rollout-4", v[4], v[0], v[1], v[2], v[3]))
    print("    %-12s   anchor: a Kubernetes rolling update gives 502s unless a preStop sleep"
          " outlasts the load balancer (kubernetes#106476)" % "")
PY
