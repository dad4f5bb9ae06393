# bench/gateway.sh: the reverse-proxy rows of `make bench`, sourced by bench/run.sh.
# Defines functions only: start_proxy (also used by bench/failover.sh), bench_gateway
# (the proxy-* rows) and gateway_report (their table, ratios and targets).
# Expects from the caller: ROOT, TMP, BIN, NGINX, WARMUP, the SRV_PIN/WRK_PIN arrays,
# scripts/proc.sh; bench_gateway also needs run.sh's bg_wrk, wrk_parse, tree_pids and tree_kib.
# shellcheck shell=bash

HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
H2O=${H2O:-/usr/bin/h2o}

# The issue's gateway targets: rps >= 1.1x HAProxy's, p99 <= HAProxy's, rps >= h2o's.
TARGET_GW_RPS_VS_HAPROXY=1.1

# Interleaved rounds (see bench_gateway): how many, and the measured wrk time of each slice.
GW_ROUNDS=${BENCH_PROXY_ROUNDS:-5}
GW_SLICE=${BENCH_PROXY_SLICE:-4s}

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

# proc_cpu_ticks PID: user + system clock ticks so far of PID and its children (nginx's
# workers), all threads.
proc_cpu_ticks()
{
    local sum=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '{ print $14 + $15 }' /proc/"$p"/stat 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# cpu_ticks CPU: "idle total" clock ticks of one cpu so far (/proc/stat).
cpu_ticks()
{
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat
}

# bench_gateway: the proxy-<kind> rows. Every proxy runs at once on the server cpu (an idle
# one sleeps in its poller), in front of the same two upstreams; then GW_ROUNDS rounds give
# each a GW_SLICE wrk run, in an order that rotates each round, so the machine's drift over
# a minute falls on all of them alike. Per slice: rps, p50, p99, requests, the proxy's cpu
# ticks and the server cpu's idle ticks. Writes $TMP/proxy-rounds (one line per slice),
# $TMP/proxy-mem (rss hwm per proxy) and notes to $TMP/proxy-notes.
bench_gateway()
{
    local kind port seen r i k out pids=() kinds=() ports=()
    local c0 c1 i0 t0 i1 t1 rps p50 p99 reqs non2xx serr secs
    : >"$TMP/proxy-notes"
    : >"$TMP/proxy-rounds"
    : >"$TMP/proxy-mem"
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
        kinds+=("$kind")
        ports+=("$port")
        pids+=("$PROXY_PID")
        bg_wrk -d"$WARMUP" "http://127.0.0.1:$port/bench" >/dev/null 2>&1 || true
    done
    for ((r = 0; r < GW_ROUNDS; r++)); do
        for ((k = 0; k < ${#kinds[@]}; k++)); do
            i=$(((k + r) % ${#kinds[@]}))
            out="$TMP/wrk-proxy-${kinds[i]}-$r.txt"
            c0=$(proc_cpu_ticks "${pids[i]}")
            read -r i0 t0 < <(cpu_ticks 0)
            bg_wrk -d"$GW_SLICE" --timeout 5s --latency "http://127.0.0.1:${ports[i]}/bench" \
                >"$out" 2>&1 || echo "bench: wrk failed for proxy-${kinds[i]}" >&2
            read -r i1 t1 < <(cpu_ticks 0)
            c1=$(proc_cpu_ticks "${pids[i]}")
            read -r rps p50 p99 reqs non2xx serr secs < <(wrk_parse "$out")
            if [ "$non2xx" -gt 0 ] || [ "$serr" -gt 0 ]; then
                echo "bench: proxy-${kinds[i]}: $non2xx non-2xx, $serr socket errors of $reqs" >&2
                rps=$(awk -v r="$reqs" -v n="$non2xx" -v s="$secs" \
                    'BEGIN { printf "%.2f", (s > 0 ? (r - n) / s : 0) }')
                reqs=$((reqs - non2xx))
            fi
            echo "proxy-${kinds[i]} $r $rps $p50 $p99 $reqs $((c1 - c0)) $((i1 - i0)) $((t1 - t0))" \
                >>"$TMP/proxy-rounds"
        done
    done
    for ((k = 0; k < ${#kinds[@]}; k++)); do
        echo "proxy-${kinds[k]} $(tree_kib "${pids[k]}" VmRSS) $(tree_kib "${pids[k]}" VmHWM)" \
            >>"$TMP/proxy-mem"
        proc_stop "${pids[k]}"
    done
    proc_stop "$UP_PID"
}

# gateway_report ROUNDS MEM NOTES CSV: prints the proxy table (medians over the rounds;
# ratios are medians of the same-round ratios), cmesh's per-round ratios and the gateway
# targets; appends the proxy rows to CSV (columns as run.sh's header).
gateway_report()
{
    python3 - "$@" "$TARGET_GW_RPS_VS_HAPROXY" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rounds_f, mem_f, notes_f, csv_f, target, hz = sys.argv[1:7]
target, hz = float(target), float(hz)
rows, mem, note = {}, {}, {}
for line in open(notes_f):
    name, _, rest = line.rstrip("\n").partition(" ")
    note[name] = rest
for line in open(mem_f):
    name, rss, hwm = line.split()
    mem[name] = (int(rss), int(hwm))
for line in open(rounds_f):
    name, r, rps, p50, p99, reqs, cpu, idle, total = line.split()
    rows.setdefault(name, {})[int(r)] = dict(rps=float(rps), p50=float(p50), p99=float(p99),
                                              reqs=int(reqs), cpu=int(cpu), idle=int(idle),
                                              total=int(total))
med = statistics.median

def col(name, key):
    return [v[key] for v in rows[name].values()]

def ratio(name, peer, key):
    if peer not in rows:
        return None
    both = [r for r in rows[name] if r in rows[peer] and rows[peer][r][key] > 0]
    return med([rows[name][r][key] / rows[peer][r][key] for r in both]) if both else None

fmt = lambda v: "-" if v is None else "%.2f" % v
hap, h2o, cm = "proxy-haproxy", "proxy-h2o", "proxy-cmesh"
print("\n%-16s %9s %8s %8s %8s %8s %7s %5s %7s %7s %7s  %s" % ("name", "rps", "p50_ms",
      "p99_ms", "rss_kib", "hwm_kib", "cpu_us", "idle", "rps/hap", "p99/hap", "rps/h2o", "note"))
csv = open(csv_f, "a")
for name in ("proxy-nginx", "proxy-haproxy", "proxy-h2o", "proxy-cmesh"):
    if name not in rows:
        print("%-16s %9s  %s" % (name, "-", note.get(name, "not measured")))
        continue
    reqs = sum(col(name, "reqs"))
    cpu_us = sum(col(name, "cpu")) * 1e6 / hz / reqs if reqs else 0
    idle = 100.0 * sum(col(name, "idle")) / max(1, sum(col(name, "total")))
    rss, hwm = mem.get(name, (0, 0))
    rh, ph, r2 = ratio(name, hap, "rps"), ratio(name, hap, "p99"), ratio(name, h2o, "rps")
    print("%-16s %9.0f %8.3f %8.3f %8d %8d %7.1f %4.0f%% %7s %7s %7s  %s" % (name,
          med(col(name, "rps")), med(col(name, "p50")), med(col(name, "p99")), rss, hwm,
          cpu_us, idle, fmt(rh), fmt(ph), fmt(r2), note.get(name, "")))
    csv.write("%s,%.2f,%.3f,%.3f,%d,,,%s,%s,%s,%d,,,%s cpu_us_per_req=%.1f server_cpu_idle=%.0f%%\n" % (
        name, med(col(name, "rps")), med(col(name, "p50")), med(col(name, "p99")), rss,
        "" if rh is None else "%.2f" % rh, "" if ph is None else "%.2f" % ph,
        "" if r2 is None else "%.2f" % r2, reqs, note.get(name, ""), cpu_us, idle))
print("  (%d rounds; medians; cpu_us: the proxy's cpu time per request; idle: its cpu's idle"
      " share while it was measured)" % max(len(v) for v in rows.values()) if rows else "")
print("\ngateway targets (proxy-cmesh vs the peers, same upstreams, same rounds):")
if cm not in rows:
    print("  gateway: not available; targets not measured")
    sys.exit(0)
if hap in rows:
    per = [rows[cm][r]["rps"] / rows[hap][r]["rps"] for r in sorted(rows[cm]) if r in rows[hap]]
    print("  rps/hap per round: " + " ".join("%.2f" % v for v in per))
    v, p = ratio(cm, hap, "rps"), ratio(cm, hap, "p99")
    print("  rps >= %.1fx haproxy               %5.2fx     %s" % (target, v,
          "MET" if v >= target else "NOT MET"))
    print("  p99 <= haproxy's                  %5.2fx     %s" % (p, "MET" if p <= 1 else "NOT MET"))
else:
    print("  rps >= %.1fx haproxy, p99 <= haproxy: haproxy not measured" % target)
if h2o in rows:
    v = ratio(cm, h2o, "rps")
    print("  rps >= h2o                        %5.2fx     %s" % (v, "MET" if v >= 1 else "NOT MET"))
else:
    print("  rps >= h2o: h2o not measured")
idle = 100.0 * sum(col(cm, "idle")) / max(1, sum(col(cm, "total")))
if idle >= 3:
    # With cpu left on the proxy's core, the other core (wrk and the upstreams) was full:
    # that core, not the gateway, set proxy-cmesh's rps.
    print("  note: the gateway's cpu was %.0f%% idle while it was measured: its rps was capped by"
          " the wrk + upstreams cpu, not by the gateway" % idle)
PY
}
