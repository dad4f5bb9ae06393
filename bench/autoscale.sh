#!/usr/bin/env bash
# bench/autoscale.sh: a load step to a new instance serving traffic. A system like the
# shipped one (users autoscaled 2..8, target 4 in flight per instance, stable window 30 s,
# panic window 3 s, 1 s ticks; a gateway, auth off) in a temp dir; then wrk -c128 through
# the gateway for AUTOSCALE_DURATION (10 s). From the start of the load, a python3 poller
# (every 50 ms) notes: the decision (desired > 2 in GET /v1/services), the first new
# instance ready (users/2 ready in GET /v1/services/users) and serving (its own /metrics
# counts a /users request). After the load, the time until the count is back at 2 (the
# stable window; bounded by AUTOSCALE_DOWN_MAX, 90 s). Anchors: the HPA decides on a 15 s
# sync period (then the pod starts: image, container, readiness); Knative's KPA ticks every
# 2 s and panics on a 6 s window (then the pod starts too).
# Nothing is pinned: the control plane, its instances and wrk share the machine's cores.
# Appends "autoscale-step decide_ms ready_ms serve_ms max_desired down_ms" to
# $AUTOSCALE_ROWS_OUT when set (bench/run.sh); "autoscale-step -" when not measured.
# Usage: bench/autoscale.sh [path/to/cmesh]
#   env: AUTOSCALE_DURATION (10, seconds) AUTOSCALE_DOWN_MAX (90, seconds) AUTOSCALE_KEEP=1
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${AUTOSCALE_DURATION:-10}
DOWN_MAX=${AUTOSCALE_DOWN_MAX:-90}

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "autoscale: $tool not found; run make deps" >&2; exit 2; }
done
if [ ! -x "$BIN" ]; then
    echo "autoscale: $BIN is not an executable; build first (make build)" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-autoscale.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    timeout 60 "$BIN" down --config "$TMP/cmesh.yaml" >>"$TMP/down.log" 2>&1 || true
    proc_cleanup
    if [ "${AUTOSCALE_KEEP:-0}" = 1 ]; then
        echo "autoscale: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Three free 64-port blocks: the control API + gateway, users.
read -r CP GP UP < <(python3 - <<'PY'
import random, socket

def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()

while True:
    b = random.randrange(20000, 30000)
    if free(b) and free(b + 1) and all(free(b + 64 + i) for i in range(8)):
        print(b, b + 1, b + 64)
        break
PY
)

cat >"$TMP/cmesh.yaml" <<EOF
control:
  listen: 127.0.0.1:$CP
  state_dir: state
services:
  users:
    command: users
    listen: 127.0.0.1:$UP
    args: [--db, users.db, --access-log, 'off']
    autoscale: { min: 2, max: 8, target: 4, stable_window: 30s, panic_window: 3s }
gateway:
  listen: 127.0.0.1:$GP
  routes:
    - { prefix: /users, service: users }
EOF

"$BIN" up --config "$TMP/cmesh.yaml" >>"$TMP/up.log" 2>&1 &
UP_PID=$!
proc_track "$UP_PID"
row="autoscale-step -"
if wait_http "http://127.0.0.1:$CP/v1/ready" "$UP_PID" "$TMP/up.log" 60; then
    wrk -t2 -c128 -d"${DURATION}"s "http://127.0.0.1:$GP/users?limit=5" >"$TMP/wrk.txt" 2>&1 &
    WRK=$!
    proc_track "$WRK"
    row=$(python3 - "$CP" "$UP" "$DURATION" "$DOWN_MAX" <<'PY' || echo "autoscale-step -"
import json, sys, time, urllib.request

cp, up, duration, down_max = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t0 = time.monotonic()

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return ""

def desired():
    try:
        for s in json.loads(get("http://127.0.0.1:%d/v1/services" % cp)):
            if s["name"] == "users":
                return s["desired"]
    except Exception:
        pass
    return -1

def ready2():
    try:
        return any(i["index"] == 2 and i["ready"]
                   for i in json.loads(get("http://127.0.0.1:%d/v1/services/users" % cp)))
    except Exception:
        return False

def serves2():
    for line in get("http://127.0.0.1:%d/metrics" % (up + 2)).splitlines():
        if line.startswith("cmesh_http_requests_total{") and 'route="/users"' in line:
            if float(line.rsplit(" ", 1)[1]) > 0:
                return True
    return False

decide = ready = serve = None
most = 2
while time.monotonic() - t0 < duration and serve is None:
    # each time is taken when its answer came (an answer may take a while under load)
    d = desired()
    most = max(most, d)
    if decide is None and d > 2:
        decide = (time.monotonic() - t0) * 1000
    if decide is not None and ready is None and ready2():
        ready = (time.monotonic() - t0) * 1000
    if ready is not None and serve is None and serves2():
        serve = (time.monotonic() - t0) * 1000
    time.sleep(0.05)
while time.monotonic() - t0 < duration:  # the rest of the step
    most = max(most, desired())
    time.sleep(0.2)
end = time.monotonic()
down = None
while time.monotonic() - end < down_max:
    if desired() == 2:
        down = (time.monotonic() - end) * 1000
        break
    time.sleep(0.2)
if serve is None:
    print("autoscale-step -")
else:
    print("autoscale-step %.0f %.0f %.0f %d %s" % (decide, ready, serve, most,
                                                  "%.0f" % down if down is not None else "-"))
PY
)
    wait "$WRK" || true
fi
echo "$row" >"$TMP/rows"
[ -n "${AUTOSCALE_ROWS_OUT:-}" ] && cat "$TMP/rows" >>"$AUTOSCALE_ROWS_OUT"
rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk.txt" 2>/dev/null || true)
python3 - "$TMP/rows" "$DURATION" "${rps:-0}" <<'PY'
import sys
v = open(sys.argv[1]).read().split()[1:]
print("\n    %-16s %s" % ("name", "result"))
if v == ["-"] or len(v) < 5:
    print("    %-16s not measured" % "autoscale-step")
else:
    print("    %-16s load start -> decision %s ms, new instance ready %s ms, serving %s ms;"
          " up to %s instances (wrk -c128 %s s, %s rps)" % ("autoscale-step", v[0], v[1], v[2], v[3],
                                                           sys.argv[2], sys.argv[3]))
    print("    %-16s back to 2 %s ms after the load (stable window 30 s)" % ("",
          v[4] if v[4] != "-" else "not within the bound"))
print("    %-16s   anchors: HPA 15000 ms sync period + pod start; Knative 2000 ms ticks,"
      " 6000 ms panic window + pod start" % "")
PY
