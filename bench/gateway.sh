# bench/gateway.sh: the reverse-proxy rows of `make bench`, sourced by bench/run.sh.
# Defines functions only: start_proxy (also used by bench/failover.sh), bench_gateway
# (the proxy-* rows) and gateway_report (their table, ratios and targets).
# Expects from the caller: ROOT, TMP, BIN, NGINX, the SRV_PIN/WRK_PIN arrays, scripts/proc.sh;
# bench_gateway also needs run.sh's run_wrk.
# shellcheck shell=bash

HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
H2O=${H2O:-/usr/bin/h2o}

# The issue's gateway targets: rps >= 1.1x HAProxy's, p99 <= HAProxy's, rps >= h2o's.
TARGET_GW_RPS_VS_HAPROXY=1.1

# render TEMPLATE OUT KEY=VALUE...: writes TEMPLATE to OUT with every @KEY@ replaced.
render()
{
    python3 - "$@" <<'PY'
import sys
tpl, out, *pairs = sys.argv[1:]
text = open(tpl, encoding="utf-8").read()
for pair in pairs:
    key, _, val = pair.partition("=")
    text = text.replace("@" + key + "@", val)
if "@" in "".join(l for l in text.splitlines() if not l.lstrip().startswith("#")):
    sys.exit("bench: %s: a placeholder was left unrendered" % out)
open(out, "w", encoding="utf-8").write(text)
PY
}

# start_proxy KIND VARIANT PORT U1 U2: starts proxy KIND on the server cpu, listening on
# 127.0.0.1:PORT in front of the upstreams on ports U1 and U2; waits until /healthz answers
# through it. Sets PROXY_PID. Returns 1 (with the reason on stderr) when it did not come up.
# KIND: nginx | haproxy | h2o | cmesh. VARIANT (haproxy only): plain = default retries,
# check = plain + active health checks, retry = check + retry-on all-retryable-errors and
# redispatch.
start_proxy()
{
    local kind=$1 variant=$2 port=$3 u1=$4 u2=$5
    local dir="$TMP/proxy-$kind-$variant-$port" cmd=()
    mkdir -p "$dir"
    PROXY_PID=""
    case $kind in
    nginx)
        render "$ROOT/bench/nginx-proxy.conf.in" "$dir/nginx.conf" \
            PREFIX="$dir/" PORT="$port" U1="$u1" U2="$u2" || return 1
        cmd=("$NGINX" -p "$dir/" -c "$dir/nginx.conf" -g "daemon off; pid $dir/nginx.pid;")
        ;;
    haproxy)
        local chk="" httpchk="" retry=""
        if [ "$variant" != plain ]; then
            httpchk="    option httpchk GET /readyz"
            chk="check inter 500ms fall 2 rise 2"
        fi
        if [ "$variant" = retry ]; then
            retry=$'    retry-on all-retryable-errors\n    option redispatch 1\n    retries 3'
        fi
        render "$ROOT/bench/haproxy.cfg.in" "$dir/haproxy.cfg" PORT="$port" U1="$u1" \
            U2="$u2" HTTPCHK="$httpchk" RETRY="$retry" CHECK="$chk" || return 1
        # -db: foreground, no daemon; -f only this file, never /etc/haproxy.
        cmd=("$HAPROXY" -db -f "$dir/haproxy.cfg")
        ;;
    h2o)
        render "$ROOT/bench/h2o.conf.in" "$dir/h2o.conf" PREFIX="$dir/" PORT="$port" \
            U1="$u1" || return 1
        cmd=("$H2O" -c "$dir/h2o.conf")
        ;;
    cmesh)
        cmd=("$BIN" gateway --listen "127.0.0.1:$port" --workers 1 --access-log off
            --route "/=http://127.0.0.1:$u1,http://127.0.0.1:$u2")
        ;;
    *)
        echo "bench: unknown proxy $kind" >&2
        return 1
        ;;
    esac
    if ! [ -x "${cmd[0]}" ]; then
        echo "bench: ${cmd[0]} not found" >&2
        return 1
    fi
    "${SRV_PIN[@]}" "${cmd[@]}" >>"$dir/stderr.log" 2>&1 &
    PROXY_PID=$!
    proc_track "$PROXY_PID"
    if ! wait_http "http://127.0.0.1:$port/healthz" "$PROXY_PID" "$dir/stderr.log"; then
        proc_stop "$PROXY_PID"
        PROXY_PID=""
        return 1
    fi
}

# start_upstreams_nginx: one nginx (1 worker, on the wrk cpu so the proxy keeps its core)
# serving `return 200` on two ports. Sets UP_PID, U1, U2.
start_upstreams_nginx()
{
    local dir="$TMP/upstreams"
    mkdir -p "$dir"
    U1=$(free_port)
    U2=$(free_port)
    while [ "$U2" = "$U1" ]; do U2=$(free_port); done
    render "$ROOT/bench/upstream.conf.in" "$dir/nginx.conf" PREFIX="$dir/" U1="$U1" U2="$U2" ||
        return 1
    "${WRK_PIN[@]}" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" \
        -g "daemon off; pid $dir/nginx.pid;" 2>>"$dir/stderr.log" &
    UP_PID=$!
    proc_track "$UP_PID"
    wait_http "http://127.0.0.1:$U1/" "$UP_PID" "$dir/stderr.log" &&
        wait_http "http://127.0.0.1:$U2/" "$UP_PID" "$dir/stderr.log"
}

# balance_note PORT: which upstreams answered 4 requests through the proxy ("a+b", "a").
balance_note()
{
    local seen="" i body
    for i in 1 2 3 4; do
        body=$(curl -sS --max-time 2 "http://127.0.0.1:$1/bench/$i" 2>/dev/null || true)
        case $body in
        *'"upstream":"a"'*) [[ $seen == *a* ]] || seen+=a ;;
        *'"upstream":"b"'*) [[ $seen == *b* ]] || seen+=b ;;
        esac
    done
    seen=$(echo "$seen" | fold -w1 | sort | paste -sd+)
    echo "${seen:-none}"
}

# bench_gateway: the proxy-<kind> rows, one proxy at a time in front of the same two
# upstreams. Appends to $TMP/rows through run_wrk and writes notes to $TMP/proxy-notes.
bench_gateway()
{
    local kind port seen
    : >"$TMP/proxy-notes"
    if ! start_upstreams_nginx; then
        echo "bench: the upstream nginx did not start; no proxy rows" >&2
        return 1
    fi
    for kind in nginx haproxy h2o cmesh; do
        port=$(free_port)
        if ! start_proxy "$kind" plain "$port" "$U1" "$U2" 2>>"$TMP/proxy-$kind.err"; then
            if [ "$kind" = cmesh ]; then
                echo "gateway: not available ($BIN gateway did not start; see below)" >&2
            else
                echo "bench: proxy $kind did not start:" >&2
            fi
            tail -n 5 "$TMP/proxy-$kind.err" >&2
            echo "proxy-$kind not available (see stderr)" >>"$TMP/proxy-notes"
            continue
        fi
        seen=$(balance_note "$port")
        [ "$kind" = h2o ] && seen="$seen (h2o 2.2 takes one upstream: the first)"
        echo "proxy-$kind upstreams:$seen" >>"$TMP/proxy-notes"
        run_wrk "proxy-$kind" "$PROXY_PID" "http://127.0.0.1:$port/bench"
        proc_stop "$PROXY_PID"
    done
    proc_stop "$UP_PID"
}

# gateway_report ROWS NOTES CSV: prints the proxy table, the ratios vs HAProxy and h2o and
# the gateway targets; appends the proxy rows to CSV (columns as run.sh's header).
gateway_report()
{
    awk -v notes="$2" -v csv="$3" -v trps="$TARGET_GW_RPS_VS_HAPROXY" '
    BEGIN {
        while ((getline line < notes) > 0) {
            split(line, f, " "); note[f[1]] = substr(line, length(f[1]) + 2)
        }
    }
    $1 ~ /^proxy-/ { rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; rss[$1] = $5; hwm[$1] = $6 }
    function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "" }
    function dash(s) { return s == "" ? "-" : s }
    END {
        printf "\n%-16s %9s %8s %8s %8s %8s %7s %7s %7s  %s\n", "name", "rps", "p50_ms",
            "p99_ms", "rss_kib", "hwm_kib", "rps/hap", "p99/hap", "rps/h2o", "note"
        n = split("proxy-nginx proxy-haproxy proxy-h2o proxy-cmesh", order, " ")
        hap = "proxy-haproxy"; h2o = "proxy-h2o"
        for (k = 1; k <= n; k++) {
            r = order[k]
            if (!(r in rps)) {
                printf "%-16s %9s  %s\n", r, "-", (r in note) ? note[r] : "not measured"
                continue
            }
            rh = (hap in rps) ? ratio(rps[r], rps[hap]) : ""
            ph = (hap in rps) ? ratio(p99[r], p99[hap]) : ""
            r2 = (h2o in rps) ? ratio(rps[r], rps[h2o]) : ""
            printf "%-16s %9.0f %8.3f %8.3f %8d %8d %7s %7s %7s  %s\n", r, rps[r], p50[r],
                p99[r], rss[r], hwm[r], dash(rh), dash(ph), dash(r2), note[r]
            printf "%s,%.2f,%.3f,%.3f,%d,,,%s,%s,%s,,,,%s\n", r, rps[r], p50[r], p99[r],
                rss[r], rh, ph, r2, note[r] >> csv
        }
        print "\ngateway targets (proxy-cmesh vs the peers, same upstreams):"
        c = "proxy-cmesh"
        if (!(c in rps)) { print "  gateway: not available; targets not measured"; exit 0 }
        if (hap in rps) {
            v = rps[c] / rps[hap]
            printf "  rps >= %.1fx haproxy              %5.2fx     %s\n", trps, v,
                (v >= trps) ? "MET" : "NOT MET"
            printf "  p99 <= haproxy (%.3f ms)      %8.3f ms  %s\n", p99[hap], p99[c],
                (p99[c] <= p99[hap]) ? "MET" : "NOT MET"
        } else print "  rps >= 1.1x haproxy, p99 <= haproxy: haproxy not measured"
        if (h2o in rps)
            printf "  rps >= h2o (%.0f)              %8.0f     %s\n", rps[h2o], rps[c],
                (rps[c] >= rps[h2o]) ? "MET" : "NOT MET"
        else print "  rps >= h2o: h2o not measured"
    }' "$1"
}
