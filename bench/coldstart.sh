#!/usr/bin/env bash
# bench/coldstart.sh: scale from zero, the cold-start time of the first request. `cmesh up`
# of a small system (users at 0 instances with the shipped cmesh.yaml's probes, a gateway
# routing /users to it), written into a temp dir with free ports. COLDSTART_ROUNDS (5)
# rounds: the service is at zero (round 1: `instances: 0`; then PUT .../scale
# {"instances":0} and wait until the gateway's cmesh_gateway_scaled_to_zero says so and
# the instance's process is gone), then one GET /users?limit=1 through the gateway is
# timed from send to its whole 200 answer: the gateway holds it, asks the control plane
# to wake users (POST /v1/services/users/wake), the supervisor spawns the instance, its
# readiness probe passes, the registry's blocking query brings the set, the held request
# is sent on. Median and max, the gateway's own view (cmesh_gateway_cold_start_seconds:
# sum / count) and a warm GET for scale. Anchors: Knative's scale from zero goes through
# the activator (which buffers the request), the autoscaler and a pod start: about 4 s
# without a mesh and 10-15 s with Istio (the 2019 scaling roadmap, knative/serving#3040,
# whose goal was under 1 s); the pod start alone is about 2 s on an idle cluster
# (knative/serving#2484).
# Nothing is pinned. Appends "coldstart median_ms max_ms gateway_mean_ms warm_ms rounds"
# to $COLDSTART_ROWS_OUT when set (bench/run.sh); "coldstart -" when not measured.
# Usage: bench/coldstart.sh [path/to/cmesh]
#   env: COLDSTART_ROUNDS (5) COLDSTART_KEEP=1 (keep the temp dir with config, logs, state)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${COLDSTART_ROUNDS:-5}

for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "coldstart: $tool not found; run make deps" >&2; exit 2; }
done
if [ ! -x "$BIN" ]; then
    echo "coldstart: $BIN is not an executable; build first (make build)" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-coldstart.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
UP_PID=""

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    timeout 60 "$BIN" down --config "$TMP/cmesh.yaml" >>"$TMP/down.log" 2>&1 || true
    proc_cleanup
    if [ "${COLDSTART_KEEP:-0}" = 1 ]; then
        echo "coldstart: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Three bases 64 ports apart at least (a service's range, docs/cmesh-yaml.md), each free.
mapfile -t ports < <(python3 - <<'PY'
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

bases = []
while len(bases) < 3:
    b = random.randrange(20000, 60000)
    if any(abs(b - o) < 64 for o in bases):
        continue
    if all(free(b + i) for i in range(4)):
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
    instances: 0
    listen: 127.0.0.1:$up
    args: [--db, users.db, --access-log, 'off']
    readiness: { path: /readyz, interval: 1s, timeout: 1s, fall: 3 }
    liveness: { path: /healthz, interval: 2s, timeout: 1s, fall: 3 }
    drain_timeout: 2s
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
    [ -n "${COLDSTART_ROWS_OUT:-}" ] && echo "coldstart -" >>"$COLDSTART_ROWS_OUT"
    exit 0
fi
echo "coldstart: system up (control :$cp, gateway :$gp, users :$up at 0 instances), $ROUNDS rounds"

if row=$(python3 - "$cp" "$gp" "$up" "$ROUNDS" "$TMP/state" <<'PY'
import http.client, json, os, statistics, sys, time

cport, gport, uport, rounds, state = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                      int(sys.argv[4]), sys.argv[5])

def call(port, method, path, body=None, timeout=40):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body,
                  headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()

def metric(series):
    status, body = call(gport, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None

def users_running():
    # any process of this system that is users/0 (its environment says so)
    want = ("CMESH_STATE=" + state).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
            stat = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if want in env and b"CMESH_INSTANCE=users/0" in env and stat not in ("Z", "X"):
            return True
    return False

def wait(cond, what, secs=30):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    sys.exit("coldstart: %s not within %d s" % (what, secs))

series = 'cmesh_gateway_scaled_to_zero{service="users"}'
cold_ms = []
for r in range(rounds):
    if r:
        status, body = call(cport, "PUT", "/v1/services/users/scale", b'{"instances":0}')
        if status != 200:
            sys.exit("coldstart: scale to 0 answered %d: %r" % (status, body))
    wait(lambda: metric(series) == 1, "the gateway seeing users at zero")
    wait(lambda: not users_running(), "users/0 stopping")
    time.sleep(0.2)  # idle a moment: nothing of the last round in flight
    t0 = time.monotonic()
    status, body = call(gport, "GET", "/users?limit=1")
    t1 = time.monotonic()
    if status != 200:
        sys.exit("coldstart: round %d: the first request answered %d: %r" % (r + 1, status, body[:200]))
    cold_ms.append((t1 - t0) * 1000)
    print("coldstart: round %d: first request %.0f ms" % (r + 1, cold_ms[-1]), file=sys.stderr)

t0 = time.monotonic()
status, _ = call(gport, "GET", "/users?limit=1")
warm = (time.monotonic() - t0) * 1000
total = metric('cmesh_gateway_cold_start_seconds_sum{route="users"}')
count = metric('cmesh_gateway_cold_start_seconds_count{route="users"}')
gw_mean = total / count * 1000 if total is not None and count else -1
print("%.0f %.0f %.0f %.1f %d" % (statistics.median(cold_ms), max(cold_ms), gw_mean, warm, rounds))
PY
); then
    [ -n "${COLDSTART_ROWS_OUT:-}" ] && echo "coldstart $row" >>"$COLDSTART_ROWS_OUT"
    read -r med mx gwm warm n <<<"$row"
    echo
    printf "    %-10s %s\n" name result
    printf "    %-10s first request from zero %s ms median, %s ms max (%s rounds); gateway's cold_start_seconds mean %s ms; warm GET %s ms\n" \
        coldstart "$med" "$mx" "$n" "$gwm" "$warm"
    printf "    %-10s   anchors: Knative (activator + autoscaler + pod start) ~4000 ms without a mesh, 10000-15000 ms with Istio (knative/serving#3040), pod start alone ~2000 ms (knative/serving#2484)\n" ""
else
    [ -n "${COLDSTART_ROWS_OUT:-}" ] && echo "coldstart -" >>"$COLDSTART_ROWS_OUT"
    echo "coldstart: not measured; the control plane said:" >&2
    tail -n 20 "$TMP/up.log" >&2 || true
fi
timeout 60 "$BIN" down --config "$TMP/cmesh.yaml" >>"$TMP/down.log" 2>&1 || true
proc_stop "$UP_PID"
