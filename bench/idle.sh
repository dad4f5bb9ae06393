#!/usr/bin/env bash
# bench/idle.sh: what an idle keep-alive client connection costs in memory. For each
# server or proxy (1 worker/thread): a small client (python3, below) opens connections one
# by one, sends one GET on each, reads the whole answer and keeps the connection open and
# silent; the server tree's VmRSS is read at N/4 and at N open connections, and the row is
# the growth between the two divided by the connections added (KiB per idle connection;
# the first quarter pays for one-time growth such as pools and malloc arenas).
#   idle-users       cmesh users, GET /healthz
#   idle-nginx       nginx `return 200` (the same JSON body shape)
#   idle-gateway     cmesh gateway in front of that users instance
#   idle-haproxy     HAProxy 2.x (1 thread) in front of it
#   idle-nginx-proxy nginx (1 worker, proxy_pass, upstream keepalive) in front of it
# Only the measured process tree counts, never the upstream. Prints KiB/conn and the ratio
# to idle-nginx; appends "name kib_per_conn" rows to $IDLE_ROWS_OUT when set (bench/run.sh).
# Usage: bench/idle.sh [path/to/cmesh]   env: IDLE_CONNECTIONS (8000) NGINX HAPROXY
# Memory hardly moves with cpu load, so this may run on a busy machine.
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${IDLE_CONNECTIONS:-8000}
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}

# Every connection is a descriptor in the client and in the server (a proxy adds none:
# its upstream connections are pooled). Raise the soft limit to the hard one if needed.
want_fds=$((N + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    N=$(($(ulimit -n) - 256))
    echo "idle: ulimit -n is $(ulimit -n): measuring $N connections" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-idle.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
cleanup()
{
    proc_cleanup
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# measure NAME PORT PID PATH: one row into $TMP/rows, or "NAME -" when it failed.
measure()
{
    local name=$1 port=$2 pid=$3 path=$4 kib
    if kib=$(python3 - "$port" "$pid" "$path" "$N" <<'PY'
import os, socket, sys

port, pid, path, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def tree(p):
    out = [p]
    for t in os.listdir("/proc/%d/task" % p):
        try:
            kids = open("/proc/%d/task/%s/children" % (p, t)).read().split()
        except OSError:
            kids = []
        for k in kids:
            out += tree(int(k))
    return out

def rss_kib():
    total = 0
    for p in tree(pid):
        for line in open("/proc/%d/status" % p):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total

req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()

def one():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("idle: connection closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if not status.startswith(b"2"):
        sys.exit("idle: answered %s" % status.decode())
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("idle: connection closed inside an answer")
        body += chunk
    return s

socks = [one() for _ in range(n // 4)]
before = rss_kib()
socks += [one() for _ in range(n - n // 4)]
after = rss_kib()
print("%.2f" % ((after - before) / (n - n // 4)))
for s in socks:
    s.close()
PY
    ); then
        echo "$name $kib" >>"$TMP/rows"
    else
        echo "$name -" >>"$TMP/rows"
    fi
}

# start NAME LOG CMD...: starts CMD in the background; sets STARTED_PID.
start()
{
    local log=$2
    shift 2
    "$@" >>"$log" 2>&1 &
    STARTED_PID=$!
    proc_track "$STARTED_PID"
}

: >"$TMP/rows"
echo "idle: $N idle keep-alive connections, each after one answer; RSS growth per connection"

# ---- cmesh users (also the upstream of every proxy row)
UP_PORT=$(free_port)
start users "$TMP/users.log" "$BIN" users --listen "127.0.0.1:$UP_PORT" --db "$TMP/users.db" \
    --workers 1 --access-log off --max-connections $((N + 1000))
USERS_PID=$STARTED_PID
if wait_http "http://127.0.0.1:$UP_PORT/healthz" "$USERS_PID" "$TMP/users.log"; then
    measure idle-users "$UP_PORT" "$USERS_PID" /healthz
else
    echo "idle-users -" >>"$TMP/rows"
fi

# ---- nginx serving a fixed answer
mkdir -p "$TMP/nginx"
NG_PORT=$(free_port)
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $((N + 1000));
error_log $TMP/nginx/error.log warn;
events { worker_connections $((N + 1000)); }
http {
    access_log off;
    keepalive_timeout 65s;
    client_body_temp_path $TMP/nginx/cb; proxy_temp_path $TMP/nginx/px;
    fastcgi_temp_path $TMP/nginx/fc; uwsgi_temp_path $TMP/nginx/uw; scgi_temp_path $TMP/nginx/sc;
    upstream users { server 127.0.0.1:$UP_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / { default_type application/json; return 200 '{"status":"ok"}'; }
    }
}
EOF
start nginx "$TMP/nginx/stderr.log" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
    -g "daemon off; pid $TMP/nginx/nginx.pid;"
if wait_http "http://127.0.0.1:$NG_PORT/healthz" "$STARTED_PID" "$TMP/nginx/stderr.log"; then
    measure idle-nginx "$NG_PORT" "$STARTED_PID" /healthz
else
    echo "idle-nginx -" >>"$TMP/rows"
fi
proc_stop "$STARTED_PID"

# ---- cmesh gateway in front of users
GW_PORT=$(free_port)
start gateway "$TMP/gateway.log" "$BIN" gateway --listen "127.0.0.1:$GW_PORT" --workers 1 \
    --access-log off --max-connections $((N + 1000)) --route "/=http://127.0.0.1:$UP_PORT"
if wait_http "http://127.0.0.1:$GW_PORT/healthz" "$STARTED_PID" "$TMP/gateway.log"; then
    measure idle-gateway "$GW_PORT" "$STARTED_PID" /healthz
else
    echo "idle-gateway -" >>"$TMP/rows"
fi
proc_stop "$STARTED_PID"

# ---- HAProxy in front of users
if [ -x "$HAPROXY" ]; then
    HA_PORT=$(free_port)
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $((N + 1000))
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 60s
    timeout http-request 10s
frontend idle
    bind 127.0.0.1:$HA_PORT
    default_backend users
backend users
    server u 127.0.0.1:$UP_PORT
EOF
    start haproxy "$TMP/haproxy.log" "$HAPROXY" -db -f "$TMP/haproxy.cfg"
    if wait_http "http://127.0.0.1:$HA_PORT/healthz" "$STARTED_PID" "$TMP/haproxy.log"; then
        measure idle-haproxy "$HA_PORT" "$STARTED_PID" /healthz
    else
        echo "idle-haproxy -" >>"$TMP/rows"
    fi
    proc_stop "$STARTED_PID"
else
    echo "idle: $HAPROXY not found" >&2
    echo "idle-haproxy -" >>"$TMP/rows"
fi

# ---- nginx as a proxy in front of users
NP_PORT=$(free_port)
sed -e "s|listen 127.0.0.1:$NG_PORT;|listen 127.0.0.1:$NP_PORT;|" \
    -e "s|location / { default_type application/json; return 200 '{\"status\":\"ok\"}'; }|location / { proxy_pass http://users; proxy_http_version 1.1; proxy_set_header Connection \"\"; }|" \
    "$TMP/nginx/nginx.conf" >"$TMP/nginx/proxy.conf"
start nginx-proxy "$TMP/nginx/stderr.log" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/proxy.conf" \
    -g "daemon off; pid $TMP/nginx/proxy.pid;"
if wait_http "http://127.0.0.1:$NP_PORT/healthz" "$STARTED_PID" "$TMP/nginx/stderr.log"; then
    measure idle-nginx-proxy "$NP_PORT" "$STARTED_PID" /healthz
else
    echo "idle-nginx-proxy -" >>"$TMP/rows"
fi
proc_stop "$STARTED_PID"
proc_stop "$USERS_PID"

[ -n "${IDLE_ROWS_OUT:-}" ] && cat "$TMP/rows" >>"$IDLE_ROWS_OUT"
python3 - "$TMP/rows" "$N" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ngx = dict(rows).get("idle-nginx", "-")
print("\n    %-18s %12s %8s" % ("name", "KiB/conn", "x nginx"))
for name, kib in rows:
    ratio = "-"
    if kib != "-" and ngx != "-" and float(ngx) > 0:
        ratio = "%.1f" % (float(kib) / float(ngx))
    print("    %-18s %12s %8s" % (name, kib, ratio))
n = int(sys.argv[2])
print("\n(target: at most 1 KiB per idle keep-alive connection for idle-users and idle-gateway;"
      " %d connections)" % n)
PY
