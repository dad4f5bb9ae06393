#!/usr/bin/env bash
# bench/run.sh: `make bench`. One wrk run per row, side by side on loopback. The groups:
#  users    cmesh vs nginx: GET /users/{id} (cmesh, access log off) | the same body from
#           nginx | cmesh with access log on | POST /users durable creates/s.
#  proxy    (bench/gateway.sh) proxy-nginx, proxy-haproxy, proxy-h2o, proxy-cmesh: each proxy
#           alone (1 worker/thread, keep-alive both sides) in front of the same two nginx
#           `return 200` upstreams; rps, p50, p99, RSS, ratios vs HAProxy and h2o. h2o 2.2
#           proxies to the first upstream only. proxy-cmesh is skipped ("gateway: not
#           available") when `cmesh gateway` does not start.
#  failover (bench/failover.sh) failover-{get,post}-{nginx,haproxy,haproxy-retry,cmesh}: two
#           real `cmesh users` upstreams on one SQLite file, kill -9 of one 2 s into an 8 s
#           load; requests lost (non-2xx + socket errors) and POSTs applied twice (dup).
#  idle     (bench/idle.sh) idle-{users,nginx,gateway,haproxy,nginx-proxy}: RSS growth per
#           idle keep-alive client connection (each after one answer), IDLE_CONNECTIONS (8000).
# The server or proxy under test is pinned to cpu 0; wrk and the upstreams to cpu 1 (taskset).
# Prints tables and the issue's targets; writes bench/results/bench-<UTC>.csv and latest.csv.
#  burst    (bench/burst.sh) burst-{cmesh,nginx,haproxy}: BURST_REQUESTS (8000) simultaneous
#           GETs through each proxy (1 worker/thread) to one `cmesh users`; ok, 503, other,
#           seconds to the last answer, ok/requests.
#  pg       (bench/pg.sh) pg-get, pg-create: cmesh users on a throw-away PostgreSQL (fsync
#           on) beside pgbench -S and -N on the same server, same connection count; ratios.
#  control  (bench/control.sh) control-restart, control-fanout, control-idle, control-load:
#           `cmesh up` of a small system: kill -9 of an instance to its replacement ready
#           and serving (median, max of CONTROL_RESTARTS); CONTROL_WATCHERS (1000) blocking
#           queries answered after one scale; then the shipped system: cpu and RSS of the
#           cmesh up process idle and under wrk through the gateway (CONTROL_WINDOW s).
#  coldstart (bench/coldstart.sh) coldstart: scale from zero, the first request through the
#           gateway to users at 0 instances (held, the service woken, then answered):
#           median and max of COLDSTART_ROUNDS, beside Knative's activator + pod start.
#  feed     (bench/feed.sh) feed-follower, feed-orders: wrk POST /users while a client and
#           a real orders follow users' GET /events: events/s, cursor lag when the load
#           ended, ms until orders caught up.
#  autoscale (bench/autoscale.sh) autoscale-step: wrk -c128 through the gateway to users
#           autoscaled 2..8 (the shipped policy, auth off): from the load start to the
#           decision, the new instance ready and serving; back to 2 after the load. Beside
#           the HPA's 15 s sync period and Knative's 2 s ticks and 6 s panic window.
#  rollout  (bench/rollout.sh) rollout-4: `cmesh rollout` of 4 users instances under wrk
#           through the gateway: its duration, requests, non-2xx and socket errors (target 0).
# Usage: bench/run.sh [path/to/cmesh]   env: BENCH_DURATION (10s) BENCH_WARMUP (2s)
#        BENCH_CONNECTIONS (50) BENCH_THREADS (1) BENCH_KEEP=1 (keep the temp dir)
#        BENCH_ROWS ("users proxy failover idle burst control coldstart feed pg autoscale rollout": the groups)
#        FAILOVER_DURATION (8s) FAILOVER_KILL_AT (2, seconds) IDLE_CONNECTIONS (8000)
#        BURST_REQUESTS (8000) CONTROL_RESTARTS (5) CONTROL_WATCHERS (1000)
#        CONTROL_WINDOW (10, seconds) COLDSTART_ROUNDS (5) AUTOSCALE_DURATION (10, seconds)
#        ROLLOUT_WINDOW (20, seconds)
#        NGINX HAPROXY H2O (peer binaries)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
BENCH_ROWS=${BENCH_ROWS:-users proxy failover idle burst control coldstart feed pg autoscale rollout}

# The issue's targets (see the summary at the end).
TARGET_RPS_RATIO=0.8
TARGET_P99_RATIO=1.5
TARGET_CREATES=15000
TARGET_RSS_KIB=$((16 * 1024))

for tool in wrk curl python3 "$NGINX"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found; run make deps" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-bench.XXXXXX")
# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
# shellcheck source=bench/gateway.sh
. "$ROOT/bench/gateway.sh"
# shellcheck source=bench/failover.sh
. "$ROOT/bench/failover.sh"
SERVER_PID=""

# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    proc_cleanup
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pinning: the server gets cpu 0 and wrk cpu 1, so the load generator never steals the
# server's core. With one cpu (or no taskset) both float and the ratios are noisier.
SRV_PIN=()
WRK_PIN=()
PIN_NOTE="not pinned"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SRV_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c 1)
    PIN_NOTE="server cpu 0, wrk cpu 1"
fi

# Process tree of PID (itself + descendants): nginx serves from a child of its master,
# and a cmesh supervisor may fork its worker, so RSS is summed over the whole tree.
tree_pids()
{
    local pid=$1 kids c
    echo "$pid"
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    for c in $kids; do
        tree_pids "$c"
    done
}

# tree_kib PID FIELD: sum of FIELD (VmRSS or VmHWM, KiB) over the tree.
tree_kib()
{
    local sum=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' /proc/"$p"/status 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# sample_rss PID OUT: writes the max VmRSS (KiB) seen every 100 ms to OUT until killed.
sample_rss()
{
    local pid=$1 out=$2 max=0 v
    echo 0 >"$out"
    while kill -0 "$pid" 2>/dev/null; do
        v=$(tree_kib "$pid" VmRSS)
        if [ "$v" -gt "$max" ]; then
            max=$v
            echo "$max" >"$out"
        fi
        sleep 0.1
    done
}

# wrk_parse FILE: prints "rps p50_ms p99_ms requests non2xx socket_errors seconds".
# wrk prints latencies as 123.45us / 1.23ms / 1.02s / 1.50m; all become ms.
wrk_parse()
{
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s")  return n * 1000
        if (u == "m")  return n * 60000
        if (u == "h")  return n * 3600000
        return -1
    }
    /^ +50% / { p50 = ms($2) }
    /^ +99% / { p99 = ms($2) }
    / requests in / { reqs = $1; secs = $4; sub(/s,?$/, "", secs) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { v = $i; sub(/,/, "", v); serr += v }
    }
    /^Requests\/sec:/ { rps = $2 }
    END { printf "%s %.3f %.3f %d %d %d %s\n", rps + 0, p50, p99, reqs, non2xx, serr, secs + 0 }
    ' "$1"
}

# bg_wrk ARGS...: wrk on its pinned cpu, started in the background and waited for, because
# bash runs an INT/TERM trap only after a foreground child exits but interrupts `wait`.
bg_wrk()
{
    local w rc=0
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" "$@" &
    w=$!
    proc_track "$w"
    wait "$w" || rc=$?
    proc_stop "$w"
    return "$rc"
}

# run_wrk NAME PID URL [wrk args...]: warm up, then one measured run while sampling the
# server tree's RSS. Appends "name rps p50 p99 rss hwm" to $TMP/rows.
run_wrk()
{
    local name=$1 pid=$2 url=$3
    shift 3
    local out="$TMP/wrk-${name//[^A-Za-z0-9]/_}.txt" rssf="$TMP/rss.$RANDOM" sampler
    bg_wrk -d"$WARMUP" "$url" "$@" >"$out.warm" 2>&1 || true
    sample_rss "$pid" "$rssf" &
    sampler=$!
    proc_track "$sampler"
    if ! bg_wrk -d"$DURATION" --timeout 5s --latency "$url" "$@" >"$out" 2>&1; then
        echo "bench: wrk failed for $name:" >&2
        cat "$out" >&2
    fi
    local hwm rss
    hwm=$(tree_kib "$pid" VmHWM)
    proc_stop "$sampler"
    rss=$(cat "$rssf" 2>/dev/null || echo 0)

    local rps p50 p99 reqs non2xx serr secs
    read -r rps p50 p99 reqs non2xx serr secs < <(wrk_parse "$out")
    if [ "$non2xx" -gt 0 ] || [ "$serr" -gt 0 ]; then
        # Failed responses must not count as throughput: report only the 2xx rate.
        echo "bench: $name: $non2xx non-2xx responses, $serr socket errors of $reqs" >&2
        rps=$(awk -v r="$reqs" -v n="$non2xx" -v s="$secs" 'BEGIN { printf "%.2f", (s > 0 ? (r - n) / s : 0) }')
    fi
    echo "$name $rps $p50 $p99 $rss $hwm" >>"$TMP/rows"
    # 2xx answers of warm-up + measured run, for the creates cross-check.
    local wreqs wnon
    read -r _ _ _ wreqs wnon _ _ < <(wrk_parse "$out.warm")
    OK_ANSWERS=$((reqs - non2xx + wreqs - wnon))
}

# ---- cmesh ---------------------------------------------------------------------------

CMESH_OK=1
NGINX_OK=1
CMESH_PORT=""
OK_ANSWERS=0 # set by run_wrk

# start_cmesh LOGARG: starts `cmesh users` on the shared bench db; sets SERVER_PID.
start_cmesh()
{
    CMESH_PORT=$(free_port)
    "${SRV_PIN[@]}" "$BIN" users --listen "127.0.0.1:$CMESH_PORT" --db "$TMP/users.db" \
        --workers 1 --access-log "$1" --drain-timeout 2s 2>>"$TMP/cmesh.stderr" &
    SERVER_PID=$!
    proc_track "$SERVER_PID"
    wait_http "http://127.0.0.1:$CMESH_PORT/healthz" "$SERVER_PID" "$TMP/cmesh.stderr"
}

: >"$TMP/rows"
USER_ID=""
BODY_FILE="$TMP/user.json"

echo "bench: cmesh $BIN, nginx $NGINX, wrk -t$THREADS -c$CONNS -d$DURATION (+$WARMUP warm-up), $PIN_NOTE"
# Other work on the machine lands on the server's pinned core and shows up as p99 noise.
read -r LOAD1 _ </proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    echo "bench: WARNING: load average $LOAD1 before start; other processes will skew the numbers" >&2
fi

# want GROUP: is GROUP in BENCH_ROWS?
want()
{
    [[ " $BENCH_ROWS " == *" $1 "* ]]
}

# bench_users: the cmesh-get, nginx-get, cmesh-get-accesslog and cmesh-post rows.
bench_users()
{
    if [ ! -x "$BIN" ]; then
        echo "bench: $BIN is not an executable; build first (make build)" >&2
        CMESH_OK=0
    elif ! start_cmesh off; then
        CMESH_OK=0
    else
        base="http://127.0.0.1:$CMESH_PORT"
        code=$(curl -sS -o "$TMP/created.json" -D "$TMP/created.hdr" -w '%{http_code}' \
            -H 'Content-Type: application/json' \
            -d '{"name":"Bench User","email":"bench.user@example.com"}' "$base/users" || true)
        USER_ID=$(awk 'tolower($1) == "location:" { sub(/.*\/users\//, "", $2); print $2 }' \
            "$TMP/created.hdr" 2>/dev/null | tr -d '\r' || true)
        if [ "$code" != 201 ] || ! [[ "$USER_ID" =~ ^[0-9]+$ ]]; then
            echo "bench: POST /users answered $code (Location id '${USER_ID}'), want 201 + /users/{id}" >&2
            CMESH_OK=0
        else
            code=$(curl -sS -o "$BODY_FILE" -w '%{http_code}' "$base/users/$USER_ID" || true)
            if [ "$code" != 200 ]; then
                echo "bench: GET /users/$USER_ID answered $code, want 200" >&2
                CMESH_OK=0
            fi
        fi
        if [ "$CMESH_OK" = 1 ]; then
            run_wrk "cmesh-get" "$SERVER_PID" "$base/users/$USER_ID"
        fi
        proc_stop "$SERVER_PID"
    fi

    if [ "$CMESH_OK" = 0 ]; then
        # Still measure the peer, with a body of the contract's shape, so the nginx half is usable.
        echo "bench: cmesh rows not measured; nginx serves a contract-shaped body instead" >&2
        USER_ID=1
        printf '%s' '{"id":1,"name":"Bench User","email":"bench.user@example.com","createdAt":"2026-01-01T00:00:00.000Z","updatedAt":"2026-01-01T00:00:00.000Z"}' >"$BODY_FILE"
    fi

    # ---- nginx serving the same body

    NGINX_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    python3 - "$ROOT/bench/nginx.conf.in" "$TMP/nginx/nginx.conf" "$TMP/nginx/" "$NGINX_PORT" \
        "$USER_ID" "$BODY_FILE" <<'PY'
import sys
tpl, out, prefix, port, uid, body_file = sys.argv[1:]
body = open(body_file, encoding="utf-8").read()
# nginx single-quoted strings: \\ and \' are escapes, \n \t \r too; `$` starts a variable.
if "$" in body:
    sys.exit("bench: the user body contains '$', which nginx's return would expand")
body = body.replace("\\", "\\\\").replace("'", "\\'")
text = open(tpl, encoding="utf-8").read()
for key, val in (("@PREFIX@", prefix), ("@PORT@", port), ("@ID@", uid), ("@BODY@", body)):
    text = text.replace(key, val)
open(out, "w", encoding="utf-8").write(text)
PY
    "${SRV_PIN[@]}" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
        -g "daemon off; pid $TMP/nginx/nginx.pid;" 2>>"$TMP/nginx/stderr.log" &
    SERVER_PID=$!
    proc_track "$SERVER_PID"
    NGINX_OK=1
    if ! wait_http "http://127.0.0.1:$NGINX_PORT/users/$USER_ID" "$SERVER_PID" "$TMP/nginx/stderr.log"; then
        cat "$TMP/nginx/nginx-error.log" >&2 2>/dev/null || true
        NGINX_OK=0
    elif ! curl -sS "http://127.0.0.1:$NGINX_PORT/users/$USER_ID" | cmp -s - "$BODY_FILE"; then
        echo "bench: nginx body differs from cmesh's body" >&2
        NGINX_OK=0
    else
        run_wrk "nginx-get" "$SERVER_PID" "http://127.0.0.1:$NGINX_PORT/users/$USER_ID"
    fi
    proc_stop "$SERVER_PID"

    # ---- cmesh with access log, then creates

    if [ "$CMESH_OK" = 1 ]; then
        if start_cmesh "$TMP/access.log"; then
            run_wrk "cmesh-get-accesslog" "$SERVER_PID" "http://127.0.0.1:$CMESH_PORT/users/$USER_ID"
            proc_stop "$SERVER_PID"
            if [ ! -s "$TMP/access.log" ]; then
                echo "bench: --access-log $TMP/access.log stayed empty under load" >&2
            fi
        fi
        if start_cmesh off; then
            run_wrk "cmesh-post" "$SERVER_PID" "http://127.0.0.1:$CMESH_PORT/users" \
                -s "$ROOT/bench/post_users.lua" -- "r$RANDOM"
            # ids are never reused and only grow, so a probe create after the run shows how
            # many rows the run really stored; a 201 without a row would inflate creates/s.
            probe=$(curl -sS -o /dev/null -D - -H 'Content-Type: application/json' \
                -d '{"name":"Bench Probe","email":"bench.probe@example.com"}' \
                "http://127.0.0.1:$CMESH_PORT/users" | tr -d '\r' |
                awk 'tolower($1) == "location:" { sub(/.*\/users\//, "", $2); print $2 }' || true)
            if [[ "$probe" =~ ^[0-9]+$ ]]; then
                stored=$((probe - USER_ID - 1))
                echo "bench: creates cross-check: wrk saw $OK_ANSWERS 2xx answers, ids advanced by $stored" >&2
                [ "$stored" -ge "$OK_ANSWERS" ] ||
                    echo "bench: WARNING: fewer rows stored than 201s answered" >&2
            fi
            proc_stop "$SERVER_PID"
        fi
    fi
}

# ---- run -----------------------------------------------------------------------------

if want users; then bench_users; fi
if want proxy; then bench_gateway || true; fi
if want failover; then bench_failover || true; fi
if want idle; then
    echo
    : >"$TMP/idle-rows"
    IDLE_ROWS_OUT="$TMP/idle-rows" bash "$ROOT/bench/idle.sh" "$BIN" || true
fi
if want burst; then
    echo
    : >"$TMP/burst-rows"
    BURST_ROWS_OUT="$TMP/burst-rows" bash "$ROOT/bench/burst.sh" "$BIN" || true
fi
if want pg; then
    bash "$ROOT/bench/pg.sh" "$BIN" || echo "bench: the pg group failed" >&2
fi

if want control; then
    echo
    : >"$TMP/control-rows"
    CONTROL_ROWS_OUT="$TMP/control-rows" bash "$ROOT/bench/control.sh" "$BIN" || true
fi
if want coldstart; then
    echo
    : >"$TMP/coldstart-rows"
    COLDSTART_ROWS_OUT="$TMP/coldstart-rows" bash "$ROOT/bench/coldstart.sh" "$BIN" || true
fi
if want feed; then
    echo
    : >"$TMP/feed-rows"
    FEED_ROWS_OUT="$TMP/feed-rows" bash "$ROOT/bench/feed.sh" "$BIN" || true
fi
if want autoscale; then
    echo
    : >"$TMP/autoscale-rows"
    AUTOSCALE_ROWS_OUT="$TMP/autoscale-rows" bash "$ROOT/bench/autoscale.sh" "$BIN" || true
fi
if want rollout; then
    echo
    : >"$TMP/rollout-rows"
    ROLLOUT_ROWS_OUT="$TMP/rollout-rows" bash "$ROOT/bench/rollout.sh" "$BIN" || true
fi

# ---- report --------------------------------------------------------------------------

mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
CSV="$ROOT/bench/results/bench-$STAMP.csv"

# One CSV for every group; a row leaves empty the columns of the other groups.
echo "name,rps,p50_ms,p99_ms,rss_kib,rps_vs_nginx,p99_vs_nginx,rps_vs_haproxy,p99_vs_haproxy,rps_vs_h2o,requests,lost,dup,note" >"$CSV"
# users_report: the users table and the targets of the services issue; exit 1 when the
# cmesh or nginx half could not be measured.
users_report()
{
    awk -v csv="$CSV" -v trps="$TARGET_RPS_RATIO" -v tp99="$TARGET_P99_RATIO" \
        -v tcreates="$TARGET_CREATES" -v trss="$TARGET_RSS_KIB" \
        -v cmesh_ok="$CMESH_OK" -v nginx_ok="$NGINX_OK" '
    { name[NR] = $1; rps[NR] = $2; p50[NR] = $3; p99[NR] = $4; rss[NR] = $5; hwm[NR] = $6; idx[$1] = NR }
    function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "" }
    END {
        ng = ("nginx-get" in idx) ? idx["nginx-get"] : 0
        order[1] = "nginx-get"; order[2] = "cmesh-get"; order[3] = "cmesh-get-accesslog"; order[4] = "cmesh-post"
        printf "\n%-22s %10s %9s %9s %9s %9s %8s %8s\n", "name", "rps", "p50_ms", "p99_ms",
            "rss_kib", "hwm_kib", "rps/ngx", "p99/ngx"
        for (k = 1; k <= 4; k++) {
            if (!(order[k] in idx)) continue
            i = idx[order[k]]
            rr = ""; pr = ""
            # Creates are not the same work as nginx returning a constant: no ratio for them.
            if (ng && name[i] != "cmesh-post") { rr = ratio(rps[i], rps[ng]); pr = ratio(p99[i], p99[ng]) }
            printf "%s,%.2f,%.3f,%.3f,%d,%s,%s,,,,,,,\n", name[i], rps[i], p50[i], p99[i], rss[i], rr, pr >> csv
            printf "%-22s %10.0f %9.3f %9.3f %9d %9d %8s %8s\n", name[i], rps[i], p50[i], p99[i],
                rss[i], hwm[i], rr == "" ? "-" : rr, pr == "" ? "-" : pr
        }
        close(csv)

        # Test membership with `in`: reading idx[k] would create the key.
        g = ("cmesh-get" in idx) ? idx["cmesh-get"] : 0
        l = ("cmesh-get-accesslog" in idx) ? idx["cmesh-get-accesslog"] : 0
        p = ("cmesh-post" in idx) ? idx["cmesh-post"] : 0
        if (g && l && rps[g] > 0)
            printf "\naccess log cost: %.1f%% rps, p99 %.3f -> %.3f ms\n",
                100 * (rps[g] - rps[l]) / rps[g], p99[g], p99[l]

        print "\ntargets:"
        fails = 0
        if (g && ng) {
            v = rps[g] / rps[ng]; ok = v >= trps; fails += !ok
            printf "  GET rps >= %.1fx nginx          %5.2fx      %s\n", trps, v, ok ? "MET" : "NOT MET"
            v = (p99[ng] > 0) ? p99[g] / p99[ng] : 0; ok = p99[ng] > 0 && v <= tp99; fails += !ok
            printf "  GET p99 <= %.1fx nginx          %5.2fx      %s\n", tp99, v, ok ? "MET" : "NOT MET"
        } else {
            print "  GET rps >= 0.8x nginx, p99 <= 1.5x nginx: not measured"; fails++
        }
        if (p) {
            ok = rps[p] >= tcreates; fails += !ok
            printf "  creates/s >= %d             %8.0f   %s\n", tcreates, rps[p], ok ? "MET" : "NOT MET"
        } else {
            printf "  creates/s >= %d: not measured\n", tcreates; fails++
        }
        # The strictest reading: the largest RSS any cmesh row reached, and which row.
        maxrss = 0; maxname = ""
        for (n in idx) if (n ~ /^cmesh/ && rss[idx[n]] >= maxrss) { maxrss = rss[idx[n]]; maxname = n }
        if (maxname != "") {
            ok = maxrss <= trss; fails += !ok
            printf "  cmesh RSS under load <= 16 MiB  %6.1f MiB  %s (max, %s)\n", maxrss / 1024,
                ok ? "MET" : "NOT MET", maxname
        } else {
            print "  cmesh RSS under load <= 16 MiB: not measured"; fails++
        }
        exit (cmesh_ok && nginx_ok) ? 0 : 1
    }' "$TMP/rows"
}

status=0
if want users; then users_report || status=$?; fi
if want proxy; then gateway_report "$TMP/proxy-rounds" "$TMP/proxy-mem" "$TMP/proxy-notes" "$CSV"; fi
if want failover; then failover_report "$TMP/failover-rows" "$CSV"; fi
if want idle; then # KiB per idle connection, in the note column: no other row has that unit
    awk '{ printf "%s,,,,,,,,,,,,,idle_kib_per_conn=%s\n", $1, $2 }' "$TMP/idle-rows" >>"$CSV"
fi
if want burst; then # requests and lost (not 2xx); the split and the time in the note column
    awk 'NF >= 7 { printf "%s,,,,,,,,,,%s,%d,,ok=%s 503=%s other=%s seconds=%s ok_ratio=%s\n",
                   $1, $2, $2 - $3, $3, $4, $5, $6, $7 }
         NF < 7 { printf "%s,,,,,,,,,,,,,not measured\n", $1 }' "$TMP/burst-rows" >>"$CSV"
fi
if want control; then # times and cpu in the note column; RSS (and the gateway's rps) in theirs
    awk '$2 == "-" { printf "%s,,,,,,,,,,,,,not measured\n", $1; next }
         $1 == "control-restart" { printf "%s,,,,,,,,,,%s,,,ready_median_ms=%s ready_max_ms=%s serve_median_ms=%s serve_max_ms=%s\n",
                                   $1, $6, $2, $3, $4, $5 }
         $1 == "control-fanout" { printf "%s,,,,,,,,,,%s,%d,,first_median_ms=%s first_max_ms=%s total_ms=%s\n",
                                  $1, $2, $2 - $3, $4, $5, $6 }
         $1 == "control-idle" { printf "%s,,,,%s,,,,,,,,,cpu_pct=%s\n", $1, $3, $2 }
         $1 == "control-load" { printf "%s,%s,,,%s,,,,,,,,,cpu_pct=%s (rps: through the gateway)\n", $1, $4, $3, $2 }' \
        "$TMP/control-rows" >>"$CSV"
fi
if want coldstart; then # times in the note column
    awk '$2 == "-" { printf "%s,,,,,,,,,,,,,not measured\n", $1; next }
         { printf "%s,,,,,,,,,,%s,,,first_median_ms=%s first_max_ms=%s gateway_mean_ms=%s warm_ms=%s anchor_knative_ms=4000\n",
                  $1, $6, $2, $3, $4, $5 }' "$TMP/coldstart-rows" >>"$CSV"
fi
if want feed; then # events/s in rps; lag, catch-up and the write load in the note column
    awk '{ printf "%s,%s,,,,,,,,,,,,lag_at_end=%s catchup_ms=%s creates_per_s=%s\n", $1, $2, $3, $4, $5 }' \
        "$TMP/feed-rows" >>"$CSV"
fi
if want autoscale; then # times in the note column
    awk '$2 == "-" { printf "%s,,,,,,,,,,,,,not measured\n", $1; next }
         { printf "%s,,,,,,,,,,,,,decide_ms=%s ready_ms=%s serve_ms=%s max_instances=%s down_ms=%s\n",
                  $1, $2, $3, $4, $5, $6 }' "$TMP/autoscale-rows" >>"$CSV"
fi
if want rollout; then # requests and lost (non-2xx + socket errors); the duration in the note
    awk '$2 == "-" { printf "%s,,,,,,,,,,,,,not measured\n", $1; next }
         { printf "%s,,,,,,,,,,%s,%d,,duration_ms=%s non2xx=%s socket_errors=%s state=%s\n",
           $1, $3, $4 + $5, $2, $4, $5, $6 }' "$TMP/rollout-rows" >>"$CSV"
fi
cp "$CSV" "$ROOT/bench/results/latest.csv"
echo
echo "bench: wrote bench/results/$(basename "$CSV") and bench/results/latest.csv"
exit "$status"
