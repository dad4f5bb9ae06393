#!/usr/bin/env bash
# bench/control.sh: what the control plane (`cmesh up`) does and costs. Each system runs
# from a cmesh.yaml written into a temp dir (free ports, data and state under it):
#   control-restart  a small system (2 users instances, a gateway): kill -9 of one instance,
#                    then the time until the registry shows a new pid for it ready (a
#                    blocking query on GET /v1/services/users) and until its own port
#                    first answers GET /users?limit=1 with 200. CONTROL_RESTARTS (5) kills,
#                    alternating the two instances and each one at least 10.5 s after its
#                    last restart, so every kill is a first restart (the supervisor restarts
#                    at once then, and backs off 1 s, 2 s ... only for an instance that dies
#                    again within 10 s). Median and max. Anchors: kubelet's first restart
#                    of a crashed container waits 10 s (CrashLoopBackOff starts at 10 s);
#                    systemd's default RestartSec is 100 ms.
#   control-fanout   the same system: CONTROL_WATCHERS (1000) blocking queries
#                    (GET /v1/services/users?index=N&wait=1m, N the current index) opened
#                    concurrently by a python3 client on raw sockets, then one change
#                    (PUT /v1/services/users/scale to one more instance); per watcher the
#                    time from that PUT to the first byte of its answer (median, max), and
#                    the time until the last watcher has its whole answer (total).
#   control-idle     the shipped system (2 users, 2 orders, a gateway with JWT auth): cpu
#                    (utime + stime from /proc/PID/stat) and RSS of the `cmesh up` process
#                    alone (not its instances) over CONTROL_WINDOW (10 s) of idle.
#   control-load     the same while wrk (-t1 -c50, a token from `cmesh token`) sends
#                    GET /users/1 through the gateway, plus the rps it got.
# Nothing is pinned: the control plane, its instances and wrk share the machine's cores.
# Appends "name values..." rows to $CONTROL_ROWS_OUT when set (bench/run.sh); a row that
# could not be measured is "name -".
# Usage: bench/control.sh [path/to/cmesh]
#   env: CONTROL_RESTARTS (5) CONTROL_WATCHERS (1000) CONTROL_WINDOW (10, seconds)
#        CONTROL_KEEP=1 (keep the temp dir with every config, log and state dir)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RESTARTS=${CONTROL_RESTARTS:-5}
WATCHERS=${CONTROL_WATCHERS:-1000}
WINDOW=${CONTROL_WINDOW:-10}

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "control: $tool not found; run make deps" >&2; exit 2; }
done
if [ ! -x "$BIN" ]; then
    echo "control: $BIN is not an executable; build first (make build)" >&2
    exit 2
fi

# Every watcher is a descriptor in the client and in the control plane. Raise the soft
# limit to the hard one if needed (the control plane inherits it), else fewer watchers.
want_fds=$((WATCHERS + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    WATCHERS=$(($(ulimit -n) - 256))
    echo "control: ulimit -n is $(ulimit -n): $WATCHERS watchers" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-control.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
CONFIGS=() # every system started, for `cmesh down` in cleanup

# stop_system CONFIG PID: `cmesh down` (the control plane stops its instances, gateway
# first), then the control plane's pid itself; down also stops recorded instances of a
# control plane that is gone, so none is left behind.
stop_system()
{
    timeout 60 "$BIN" down --config "$1" >>"$TMP/down.log" 2>&1 || true
    [ -n "${2:-}" ] && proc_stop "$2"
}

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    local c
    for c in "${CONFIGS[@]+"${CONFIGS[@]}"}"; do
        timeout 60 "$BIN" down --config "$c" >>"$TMP/down.log" 2>&1 || true
    done
    proc_cleanup
    if [ "${CONTROL_KEEP:-0}" = 1 ]; then
        echo "control: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: >"$TMP/rows"

# pick_ports N: N bases, one a line, each with its first 4 ports free and its 64-port
# range (a service's, see docs/cmesh-yaml.md) clear of the others.
pick_ports()
{
    python3 - "$1" <<'PY'
import random, socket, sys

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
while len(bases) < int(sys.argv[1]):
    b = random.randrange(20000, 60000)
    if any(abs(b - o) < 64 for o in bases):
        continue
    if all(free(b + i) for i in range(4)):
        bases.append(b)
print("\n".join(map(str, bases)))
PY
}

# start_system DIR: runs `cmesh up --config DIR/cmesh.yaml` in the foreground (background
# job) and waits up to 60 s for GET /v1/ready; sets UP_PID. Returns 1 on failure.
start_system()
{
    local dir=$1 port
    port=$(awk '/^  listen:/ && !done { sub(/.*:/, "", $2); print $2; done = 1 }' "$dir/cmesh.yaml")
    CONFIGS+=("$dir/cmesh.yaml")
    "$BIN" up --config "$dir/cmesh.yaml" >>"$dir/up.log" 2>&1 &
    UP_PID=$!
    proc_track "$UP_PID"
    wait_http "http://127.0.0.1:$port/v1/ready" "$UP_PID" "$dir/up.log" 60
}

# ---- restart and fan-out: a small system ---------------------------------------------

bench_small()
{
    local dir="$TMP/small" cp gp up ports
    mkdir -p "$dir"
    mapfile -t ports < <(pick_ports 3)
    cp=${ports[0]} gp=${ports[1]} up=${ports[2]}
    # The probes are the shipped cmesh.yaml's: readiness every 1 s is what a restart waits for.
    cat >"$dir/cmesh.yaml" <<EOF
control:
  listen: 127.0.0.1:$cp
  state_dir: state
services:
  users:
    command: users
    instances: 2
    listen: 127.0.0.1:$up
    args: [--db, users.db]
    readiness: { path: /readyz, interval: 1s, timeout: 1s, fall: 3 }
    liveness: { path: /healthz, interval: 2s, timeout: 1s, fall: 3 }
    drain_timeout: 2s
gateway:
  listen: 127.0.0.1:$gp
  routes:
    - prefix: /users
      service: users
EOF
    if ! start_system "$dir"; then
        echo "control-restart -" >>"$TMP/rows"
        echo "control-fanout -" >>"$TMP/rows"
        return 0
    fi
    echo "control: small system up (control :$cp, gateway :$gp, users :$up and :$((up + 1)))"

    local row
    if row=$(python3 - "$cp" "$RESTARTS" <<'PY'
import http.client, json, os, signal, statistics, sys, threading, time

cport, rounds = int(sys.argv[1]), int(sys.argv[2])
STABLE = 10.5  # s: the supervisor's 10 s stable run that resets its backoff, plus margin

def get(path, port=None, timeout=40):
    c = http.client.HTTPConnection("127.0.0.1", port or cport, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, int(r.getheader("X-Cmesh-Index") or 0), body
    finally:
        c.close()

def instances(path):
    status, idx, body = get(path)
    if status != 200:
        sys.exit("control: %s answered %d" % (path, status))
    return idx, {e["id"]: e for e in json.loads(body)}

def gone(pid):
    # The listening socket is closed once the process is a zombie or reaped.
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True

idx, inst = instances("/v1/services/users")
ids = sorted(inst)
last_kill = {i: -1e9 for i in ids}
ready_ms, serve_ms = [], []
for r in range(rounds):
    iid = ids[r % len(ids)]
    wait = last_kill[iid] + STABLE - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    idx, inst = instances("/v1/services/users")
    e = inst[iid]
    if not e.get("ready") or not e.get("pid"):
        sys.exit("control: %s is not ready before kill %d: %s" % (iid, r + 1, e))
    old, port = e["pid"], e["port"]
    served = []

    def serve():
        while not gone(old):
            time.sleep(0.001)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                if get("/users?limit=1", port=port, timeout=1)[0] == 200:
                    served.append(time.monotonic())
                    return
            except OSError:
                pass
            time.sleep(0.005)

    t0 = time.monotonic()
    last_kill[iid] = t0
    os.kill(old, signal.SIGKILL)
    th = threading.Thread(target=serve)
    th.start()
    t_ready = None
    end = t0 + 30
    while t_ready is None and time.monotonic() < end:
        idx, inst = instances("/v1/services/users?index=%d&wait=30s" % idx)
        e = inst.get(iid)
        if e and e.get("ready") and e.get("pid") and e["pid"] != old:
            t_ready = time.monotonic()
    th.join()
    if t_ready is None or not served:
        sys.exit("control: kill %d of %s: no ready replacement or no 200 within 30 s" % (r + 1, iid))
    ready_ms.append((t_ready - t0) * 1000)
    serve_ms.append((served[0] - t0) * 1000)
    print("control: kill -9 %d of %s (pid %d): ready %.0f ms (new pid %d), first 200 %.0f ms"
          % (r + 1, iid, old, ready_ms[-1], e["pid"], serve_ms[-1]), file=sys.stderr)
print("%.0f %.0f %.0f %.0f %d" % (statistics.median(ready_ms), max(ready_ms),
                                   statistics.median(serve_ms), max(serve_ms), rounds))
PY
    ); then
        echo "control-restart $row" >>"$TMP/rows"
    else
        echo "control-restart -" >>"$TMP/rows"
    fi

    if row=$(python3 - "$cp" "$WATCHERS" <<'PY'
import json, selectors, socket, statistics, sys, time

cport, n = int(sys.argv[1]), int(sys.argv[2])
addr = ("127.0.0.1", cport)

def request(raw):
    s = socket.create_connection(addr, timeout=10)
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data

def index_of(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"x-cmesh-index":
            return int(v)
    return -1

def status_of(head):
    parts = head.split(b" ", 2)
    return int(parts[1]) if head.startswith(b"HTTP/1.") and len(parts) > 1 else -1

data = request(b"GET /v1/services/users HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
head, _, body = data.partition(b"\r\n\r\n")
index, count = index_of(head), len(json.loads(body))
req = ("GET /v1/services/users?index=%d&wait=1m HTTP/1.1\r\nHost: c\r\n"
       "Connection: close\r\n\r\n" % index).encode()

# Open all n at once (non-blocking connects), each sending its query once connected.
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(addr)
    sel.register(s, selectors.EVENT_WRITE)
    socks.append(s)
sent, deadline = 0, time.monotonic() + 20
while sent < n and time.monotonic() < deadline:
    for key, _ in sel.select(1):
        s = key.fileobj
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            sys.exit("control: a watcher's connect failed")
        s.send(req)  # a short request into an empty send buffer: never partial
        sel.modify(s, selectors.EVENT_READ)
        sent += 1
if sent < n:
    sys.exit("control: only %d of %d watchers connected in 20 s" % (sent, n))
# Let the control plane read and park every query; none may answer before the change.
early = [k for k, _ in sel.select(1.0)]
if early:
    sys.exit("control: %d watchers were answered before the change" % len(early))

body = json.dumps({"instances": count + 1}).encode()
put = (b"PUT /v1/services/users/scale HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\n"
       b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
t0 = time.monotonic()
ans = request(put)
t_put = time.monotonic() - t0
if status_of(ans) != 200:
    sys.exit("control: PUT scale answered: %r" % ans[:200])

first, data, bad = {}, {s: b"" for s in socks}, 0
last, open_ = t0, n
deadline = t0 + 30
while open_ and time.monotonic() < deadline:
    for key, _ in sel.select(1):
        s = key.fileobj
        try:
            chunk = s.recv(65536)
        except OSError:
            chunk = b""
        now = time.monotonic()
        if chunk:
            first.setdefault(s, now)
            data[s] += chunk
            continue
        sel.unregister(s)
        s.close()
        open_ -= 1
        last = now
        head = data[s].partition(b"\r\n\r\n")[0]
        if status_of(head) != 200 or index_of(head) <= index:
            bad += 1
ok = n - open_ - bad
if open_ or bad:
    print("control: %d watchers without an answer in 30 s, %d with a wrong one" % (open_, bad),
          file=sys.stderr)
lat = [(first[s] - t0) * 1000 for s in socks if s in first]
print("control: PUT scale to %d answered in %.1f ms" % (count + 1, t_put * 1000), file=sys.stderr)
print("%d %d %.1f %.1f %.1f" % (n, ok, statistics.median(lat) if lat else -1,
                                max(lat) if lat else -1, (last - t0) * 1000))
PY
    ); then
        echo "control-fanout $row" >>"$TMP/rows"
    else
        echo "control-fanout -" >>"$TMP/rows"
    fi
    stop_system "$dir/cmesh.yaml" "$UP_PID"
}

# ---- the control plane's own cost: the shipped system ---------------------------------

# sample PID SECONDS: "cpu_pct rss_max_kib" of PID alone (not its children) over SECONDS:
# utime + stime from /proc/PID/stat at both ends, VmRSS every 100 ms.
sample()
{
    python3 - "$1" "$2" <<'PY'
import os, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
tck = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck  # utime, stime (fields 14, 15)

def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

c0, t0, peak = cpu(), time.monotonic(), rss()
while time.monotonic() - t0 < secs:
    time.sleep(0.1)
    peak = max(peak, rss())
c1, t1 = cpu(), time.monotonic()
print("%.2f %d" % (100 * (c1 - c0) / (t1 - t0), peak))
PY
}

bench_cost()
{
    local dir="$TMP/default" cp gp up op ports
    mkdir -p "$dir"
    mapfile -t ports < <(pick_ports 4)
    cp=${ports[0]} gp=${ports[1]} up=${ports[2]} op=${ports[3]}
    # The shipped cmesh.yaml with free ports; its relative paths (data/...) land in $dir.
    sed -e "s/127\.0\.0\.1:9000/127.0.0.1:$cp/" -e "s/127\.0\.0\.1:8080/127.0.0.1:$gp/" \
        -e "s/127\.0\.0\.1:7001/127.0.0.1:$up/" -e "s/127\.0\.0\.1:7101/127.0.0.1:$op/" \
        "$ROOT/cmesh.yaml" >"$dir/cmesh.yaml"
    if ! start_system "$dir"; then
        echo "control-idle -" >>"$TMP/rows"
        echo "control-load -" >>"$TMP/rows"
        return 0
    fi
    echo "control: shipped system up (control :$cp, gateway :$gp, users :$up+, orders :$op+), pid $UP_PID"

    local row
    if row=$(sample "$UP_PID" "$WINDOW"); then
        echo "control-idle $row" >>"$TMP/rows"
    else
        echo "control-idle -" >>"$TMP/rows"
    fi

    local token gw="http://127.0.0.1:$gp" code
    if ! token=$(cd "$dir" && "$BIN" token --config cmesh.yaml --sub bench \
        --scope "users:read users:write" 2>>"$dir/token.log"); then
        echo "control: cmesh token failed:" >&2
        cat "$dir/token.log" >&2
        echo "control-load -" >>"$TMP/rows"
        stop_system "$dir/cmesh.yaml" "$UP_PID"
        return 0
    fi
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"name":"Bench","email":"bench@example.com"}' \
        "$gw/users" || true)
    [ "$code" = 201 ] || [ "$code" = 409 ] || echo "control: POST /users through the gateway: $code" >&2
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$gw/users/1" || true)
    if [ "$code" != 200 ]; then
        echo "control: GET /users/1 through the gateway answered $code, want 200" >&2
        echo "control-load -" >>"$TMP/rows"
        stop_system "$dir/cmesh.yaml" "$UP_PID"
        return 0
    fi
    # wrk runs 2 s longer than the window: 1 s to get going before it, 1 s after.
    wrk -t1 -c50 -d$((WINDOW + 2))s -H "Authorization: Bearer $token" "$gw/users/1" \
        >"$TMP/wrk.txt" 2>&1 &
    local w=$!
    proc_track "$w"
    sleep 1
    row=$(sample "$UP_PID" "$WINDOW" || echo "")
    wait "$w" || true
    proc_stop "$w"
    local rps non2xx
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk.txt")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$TMP/wrk.txt")
    [ -z "$non2xx" ] || echo "control: wrk through the gateway: $non2xx non-2xx answers" >&2
    if [ -n "$row" ] && [ -n "$rps" ]; then
        echo "control-load $row $rps" >>"$TMP/rows"
    else
        echo "control-load -" >>"$TMP/rows"
    fi
    stop_system "$dir/cmesh.yaml" "$UP_PID"
}

echo "control: $RESTARTS restarts, $WATCHERS watchers, ${WINDOW}s windows (not pinned)"
bench_small
bench_cost

[ -n "${CONTROL_ROWS_OUT:-}" ] && cat "$TMP/rows" >>"$CONTROL_ROWS_OUT"
python3 - "$TMP/rows" "$WINDOW" <<'PY'
import sys
rows = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1]) if l.strip()}
window = sys.argv[2]

def row(name):
    v = rows.get(name, ["-"])
    return None if v == ["-"] else v

print("\n    %-16s %s" % ("name", "result"))
r = row("control-restart")
if r:
    print("    %-16s ready %s ms median, %s ms max; first 200 %s ms median, %s ms max (%s kills)"
          % ("control-restart", r[0], r[1], r[2], r[3], r[4]))
    print("    %-16s   anchors: kubelet first restart 10000 ms (CrashLoopBackOff starts at 10 s);"
          " systemd RestartSec default 100 ms" % "")
else:
    print("    %-16s not measured" % "control-restart")
r = row("control-fanout")
if r:
    print("    %-16s %s/%s watchers answered; first byte %s ms median, %s ms max; all %s ms"
          % ("control-fanout", r[1], r[0], r[2], r[3], r[4]))
else:
    print("    %-16s not measured" % "control-fanout")
for name, what in (("control-idle", "idle"), ("control-load", "wrk through the gateway")):
    r = row(name)
    if r:
        extra = ", gateway %.0f rps" % float(r[2]) if len(r) > 2 else ""
        print("    %-16s cpu %s%% of a core, RSS %.1f MiB (the cmesh up process, %s s, %s%s)"
              % (name, r[0], int(r[1]) / 1024, window, what, extra))
    else:
        print("    %-16s not measured" % name)
PY
