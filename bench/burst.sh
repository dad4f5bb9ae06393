#!/usr/bin/env bash
# bench/burst.sh: one burst of simultaneous requests through a proxy to one instance.
# One `cmesh users` instance (its own SQLite db in the temp dir, access log off, a few
# users created first) stands behind each proxy in turn, each with 1 worker/thread:
#   burst-cmesh    cmesh gateway, its defaults (per-instance max_connections 1024, then a
#                  queue bounded by max_pending and timeouts.total)
#   burst-nginx    nginx, proxy_pass with upstream keepalive (bench/burst-nginx.conf.in)
#   burst-haproxy  HAProxy, server maxconn 1024, then its queue (bench/burst-haproxy.cfg.in)
# A python3 client (below) opens BURST_REQUESTS connections first, then writes
# `GET /users/1` with `Connection: close` on all of them as fast as it can and reads every
# answer. Each row: ok (2xx), 503, other (any other status, a reset, a close before the
# answer, no answer within BURST_TIMEOUT), the seconds from the first write to the last
# answer, and ok / requests. The instance is fast: a proxy that queues serves all of it.
# Appends "name requests ok 503 other seconds ok_ratio" rows to $BURST_ROWS_OUT when set
# (bench/run.sh). Usage: bench/burst.sh [path/to/cmesh]
#   env: BURST_REQUESTS (8000) BURST_TIMEOUT (60, seconds) NGINX HAPROXY
#        BURST_USERS (the instance's binary; default the cmesh given, so an older gateway
#        can be measured in front of the same instance) BURST_KEEP=1 (keep the temp dir)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${BURST_REQUESTS:-8000}
BURST_TIMEOUT=${BURST_TIMEOUT:-60}
USERS_BIN=${BURST_USERS:-$BIN}
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
# The gateway's listen backlog; the peers get the same so none drops SYNs earlier.
BACKLOG=1024

# The client holds N descriptors, and nginx two per request (client + upstream; it pools
# no more than 64 and opens one per request in flight). Raise the soft limit to the hard
# one if needed, else shrink the burst to what fits. (nginx's worker_connections gets 3N:
# at 2N it ran short, since a closed client connection still counts while nginx lingers
# on it, and it then closed connections of the burst that had not sent their request.)
want_fds=$((2 * N + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    N=$((($(ulimit -n) - 256) / 2))
    echo "burst: ulimit -n is $(ulimit -n): a burst of $N requests" >&2
fi

# nginx may not raise its own limit (no privilege): its worker_rlimit_nofile is this one.
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=$((3 * N + 1024))

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-burst.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    proc_cleanup
    if [ "${BURST_KEEP:-0}" = 1 ]; then
        echo "burst: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The proxy under test gets cpu 0, the instance and the client cpu 1 (as in bench/run.sh).
SRV_PIN=()
CLI_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SRV_PIN=(taskset -c 0)
    CLI_PIN=(taskset -c 1)
fi

# start LOG CMD...: starts CMD in the background; sets STARTED_PID.
start()
{
    local log=$1
    shift
    "$@" >>"$log" 2>&1 &
    STARTED_PID=$!
    proc_track "$STARTED_PID"
}

# burst NAME PORT: one burst through 127.0.0.1:PORT; one row into $TMP/rows, or "NAME -"
# when the client itself failed.
burst()
{
    local name=$1 port=$2 row
    if row=$("${CLI_PIN[@]}" python3 - "$port" "$N" "$BURST_TIMEOUT" <<'PY'
import selectors, socket, sys, time

port, n, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
req = b"GET /users/1 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"

# Connect one by one, each handshake complete before the next: the burst is the writes,
# not a SYN flood against the listen backlog. A connect that fails counts as "other".
socks, other = [], 0
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        other += 1
        continue
    s.setblocking(False)
    socks.append(s)

sel = selectors.DefaultSelector()
data = {}
t0 = time.monotonic()
for s in socks:
    try:
        s.send(req)  # 52 bytes into an empty send buffer: never partial
    except OSError:
        other += 1
        s.close()
        continue
    data[s] = b""
    sel.register(s, selectors.EVENT_READ)

ok = e503 = 0
last = t0
deadline = t0 + timeout

def done(s):
    # Connection: close: the answer ends at EOF; only its status line is judged.
    global ok, e503, other, last
    sel.unregister(s)
    s.close()
    head = data.pop(s)
    parts = head.split(b" ", 2)
    if head.startswith(b"HTTP/1.") and len(parts) >= 2:
        code = parts[1]
        if code.startswith(b"2"):
            ok += 1
        elif code == b"503":
            e503 += 1
        else:
            other += 1
    else:
        other += 1  # reset or closed before an answer
    last = time.monotonic()

while data:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    for key, _ in sel.select(min(left, 1.0)):
        s = key.fileobj
        try:
            chunk = s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            chunk = b""
        if chunk:
            if len(data[s]) < 64:  # the status line is all that is needed
                data[s] += chunk
        else:
            done(s)
other += len(data)  # no answer within the timeout
for s in data:
    s.close()
print("%d %d %d %d %.3f %.4f" % (n, ok, e503, other, last - t0, ok / n if n else 0))
PY
    ); then
        echo "$name $row" >>"$TMP/rows"
    else
        echo "$name -" >>"$TMP/rows"
    fi
}

: >"$TMP/rows"
echo "burst: $N simultaneous requests (GET /users/1, Connection: close) through each proxy to one cmesh users"

# ---- the instance: cmesh users, a few users so /users/1 exists
UP_PORT=$(free_port)
start "$TMP/users.log" "${CLI_PIN[@]}" "$USERS_BIN" users --listen "127.0.0.1:$UP_PORT" \
    --db "$TMP/users.db" --workers 1 --access-log off --max-connections $((N + 1000))
USERS_PID=$STARTED_PID
if ! wait_http "http://127.0.0.1:$UP_PORT/healthz" "$USERS_PID" "$TMP/users.log"; then
    echo "burst: cmesh users did not start; no rows" >&2
    exit 1
fi
for i in 1 2 3; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"name\":\"Burst User $i\",\"email\":\"burst.user$i@example.com\"}" \
        "http://127.0.0.1:$UP_PORT/users" || true)
    if [ "$code" != 201 ]; then
        echo "burst: POST /users answered $code, want 201" >&2
        exit 1
    fi
done
curl -fsS -o /dev/null "http://127.0.0.1:$UP_PORT/users/1" ||
    { echo "burst: GET /users/1 failed on the instance" >&2; exit 1; }

# proxy_row NAME PORT PID LOG: waits for the proxy to answer /users/1, bursts, stops it.
proxy_row()
{
    local name=$1 port=$2 pid=$3 log=$4
    if wait_http "http://127.0.0.1:$port/users/1" "$pid" "$log"; then
        burst "$name" "$port"
    else
        echo "$name -" >>"$TMP/rows"
    fi
    proc_stop "$pid"
}

# ---- cmesh gateway, its defaults
GW_PORT=$(free_port)
start "$TMP/gateway.log" "${SRV_PIN[@]}" "$BIN" gateway --listen "127.0.0.1:$GW_PORT" \
    --workers 1 --access-log off --route "/users=http://127.0.0.1:$UP_PORT"
proxy_row burst-cmesh "$GW_PORT" "$STARTED_PID" "$TMP/gateway.log"

# ---- nginx
mkdir -p "$TMP/nginx"
NG_PORT=$(free_port)
NG_CONNS=$((3 * N + 1024))
[ "$NG_CONNS" -gt "$NOFILE" ] && NG_CONNS=$NOFILE
render "$ROOT/bench/burst-nginx.conf.in" "$TMP/nginx/nginx.conf" PREFIX="$TMP/nginx/" \
    PORT="$NG_PORT" UP="$UP_PORT" NOFILE="$NOFILE" WORKER_CONNECTIONS="$NG_CONNS" \
    BACKLOG="$BACKLOG"
start "$TMP/nginx/stderr.log" "${SRV_PIN[@]}" "$NGINX" -p "$TMP/nginx/" \
    -c "$TMP/nginx/nginx.conf" -g "daemon off; pid $TMP/nginx/nginx.pid;"
proxy_row burst-nginx "$NG_PORT" "$STARTED_PID" "$TMP/nginx/stderr.log"

# ---- HAProxy
if [ -x "$HAPROXY" ]; then
    HA_PORT=$(free_port)
    # HAProxy refuses to start when maxconn needs more descriptors (two per connection)
    # than it may open; the burst itself always fits (N <= (limit - 256) / 2).
    HA_MAXCONN=$((N + 1000))
    [ $((2 * HA_MAXCONN + 200)) -gt "$NOFILE" ] && HA_MAXCONN=$(((NOFILE - 200) / 2))
    render "$ROOT/bench/burst-haproxy.cfg.in" "$TMP/haproxy.cfg" PORT="$HA_PORT" \
        UP="$UP_PORT" MAXCONN="$HA_MAXCONN" BACKLOG="$BACKLOG"
    # -db: foreground, no daemon; -f only this file, never /etc/haproxy.
    start "$TMP/haproxy.log" "${SRV_PIN[@]}" "$HAPROXY" -db -f "$TMP/haproxy.cfg"
    proxy_row burst-haproxy "$HA_PORT" "$STARTED_PID" "$TMP/haproxy.log"
else
    echo "burst: $HAPROXY not found" >&2
    echo "burst-haproxy -" >>"$TMP/rows"
fi
proc_stop "$USERS_PID"

[ -n "${BURST_ROWS_OUT:-}" ] && cat "$TMP/rows" >>"$BURST_ROWS_OUT"
python3 - "$TMP/rows" <<'PY'
import sys
print("\n    %-14s %8s %8s %8s %8s %9s %8s" % ("name", "requests", "ok", "503", "other", "seconds", "ok/req"))
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 7:
        print("    %-14s %8s" % (f[0], "-"))
        continue
    print("    %-14s %8s %8s %8s %8s %9s %8s" % tuple(f[:7]))
print("\n(the instance is fast: a proxy that queues a burst it can serve within its timeouts"
      " answers every request 2xx)")
PY
