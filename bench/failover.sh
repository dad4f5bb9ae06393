# bench/failover.sh: the failover rows of `make bench`, sourced by bench/run.sh after
# bench/gateway.sh (it starts the proxies with start_proxy). Defines functions only.
# For each proxy: two REAL `cmesh users` upstreams sharing one fresh SQLite file, wrk for
# FAILOVER_DURATION through the proxy, and kill -9 of upstream a FAILOVER_KILL_AT seconds
# in. Once with GET /users/1, once with POST /users (unique email + Idempotency-Key each).
# lost = requests the client saw fail (non-2xx + socket errors); dup = POSTs that reached
# a service twice and were refused (409: each request's email is unique, so a 409 can only
# be a second application of the same request).
# shellcheck shell=bash

FAILOVER_DURATION=${FAILOVER_DURATION:-8s}
FAILOVER_KILL_AT=${FAILOVER_KILL_AT:-2}

# start_users_upstream PORT DB LOG: a `cmesh users` instance on the wrk cpu (the proxy keeps
# its core); echoes nothing, sets UPSTREAM_PID.
start_users_upstream()
{
    "${WRK_PIN[@]}" "$BIN" users --listen "127.0.0.1:$1" --db "$2" --access-log off \
        --drain-timeout 1s 2>>"$3" &
    UPSTREAM_PID=$!
    proc_track "$UPSTREAM_PID"
    wait_http "http://127.0.0.1:$1/healthz" "$UPSTREAM_PID" "$3"
}

# failover_run NAME KIND VARIANT METHOD: one failover row; appends
# "NAME requests ok created conflict other replayed serr rows inflight" to $TMP/failover-rows.
failover_run()
{
    local name=$1 kind=$2 variant=$3 method=$4
    local dir="$TMP/$name" ua ub pa pb port out w rc=0
    mkdir -p "$dir"
    ua=$(free_port)
    ub=$(free_port)
    start_users_upstream "$ua" "$dir/users.db" "$dir/a.log" || return 1
    pa=$UPSTREAM_PID
    start_users_upstream "$ub" "$dir/users.db" "$dir/b.log" || { proc_stop "$pa"; return 1; }
    pb=$UPSTREAM_PID
    if [ "$method" = get ]; then
        curl -fsS -o /dev/null -H 'Content-Type: application/json' \
            -d '{"name":"Failover User","email":"failover@x.io"}' "http://127.0.0.1:$ub/users" ||
            echo "bench: $name: creating user 1 failed" >&2
    fi
    port=$(free_port)
    if ! start_proxy "$kind" "$variant" "$port" "$ua" "$ub" 2>>"$dir/proxy.err"; then
        if [ "$kind" = cmesh ]; then
            echo "gateway: not available; $name skipped" >&2
        else
            echo "bench: $name: proxy $kind did not start:" >&2
            tail -n 5 "$dir/proxy.err" >&2
        fi
        proc_stop "$pa"
        proc_stop "$pb"
        return 1
    fi
    out="$dir/wrk.txt"
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$FAILOVER_DURATION" --timeout 5s \
        -s "$ROOT/bench/failover.lua" "http://127.0.0.1:$port/users/1" -- "$method" /users/1 \
        >"$out" 2>&1 &
    w=$!
    proc_track "$w"
    sleep "$FAILOVER_KILL_AT"
    kill -KILL "$pa" 2>/dev/null || true
    # 2>/dev/null: bash reports the killed upstream ("Killed ...") while it waits here.
    wait "$w" 2>/dev/null || rc=$?
    proc_stop "$w"
    [ "$rc" = 0 ] || { echo "bench: $name: wrk failed:" >&2; cat "$out" >&2; }
    proc_stop "$PROXY_PID"
    proc_stop "$pb"
    proc_stop "$pa"

    local rows counts
    rows=$(sqlite3 "$dir/users.db" 'SELECT count(*) FROM users;' 2>/dev/null || echo -1)
    counts=$(awk '/^failover:/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        serr = v["connect"] + v["read"] + v["write"] + v["timeout"]
        inflight = v["sent"] - v["requests"] - serr
        printf "%d %d %d %d %d %d %d", v["requests"], v["ok"], v["created"], v["conflict"],
            v["other"], v["replayed"], serr
        printf " %d", (inflight > 0) ? inflight : 0
    }' "$out")
    if [ -z "$counts" ]; then
        echo "bench: $name: no failover line from wrk:" >&2
        cat "$out" >&2
        return 1
    fi
    read -r -a counts <<<"$counts"
    echo "$name ${counts[*]:0:7} $rows ${counts[7]}" >>"$TMP/failover-rows"
}

# bench_failover: the failover-get-<proxy> and failover-post-<proxy> rows.
bench_failover()
{
    local spec kind variant label method
    : >"$TMP/failover-rows"
    if ! command -v sqlite3 >/dev/null; then
        echo "bench: sqlite3 not found; no failover rows" >&2
        return 1
    fi
    # label:kind:variant. HAProxy gets active health checks in both rows (without them it
    # would keep sending half the traffic to the dead instance for the whole run).
    for spec in nginx:nginx:plain haproxy:haproxy:check haproxy-retry:haproxy:retry \
        cmesh:cmesh:plain; do
        IFS=: read -r label kind variant <<<"$spec"
        for method in get post; do
            failover_run "failover-$method-$label" "$kind" "$variant" "$method" || true
        done
    done
}

# failover_report ROWS CSV: prints the failover table and targets; appends the rows to CSV.
failover_report()
{
    awk -v csv="$2" '
    { n++; name[n] = $1; req[n] = $2; okc[n] = $3; cr[n] = $4; cf[n] = $5; oth[n] = $6
      rep[n] = $7; serr[n] = $8; rows[n] = $9; infl[n] = $10; idx[$1] = n }
    END {
        printf "\n%-26s %8s %6s %6s %6s %6s %6s %8s %6s  %s\n", "name", "requests", "lost",
            "dup", "non2xx", "sockerr", "201", "replayed", "rows", "note"
        for (i = 1; i <= n; i++) {
            lost = cf[i] + oth[i] + serr[i]
            post = name[i] ~ /^failover-post-/
            dup = post ? cf[i] : 0
            note = ""
            # A write stored whose 201 the client never saw (it saw an error instead).
            # Each 201 the client saw is one request, so one row (a replayed 201 too: its
            # first try made the row). Extra rows are writes whose 201 the client never saw:
            # answered as failed, or still in flight when wrk stopped (those may be stored).
            if (post && rows[i] > cr[i])
                note = sprintf("rows-201s %d (%d in flight at the end)", rows[i] - cr[i], infl[i])
            if (post && rows[i] < cr[i])
                note = sprintf("%d 201s without a row", cr[i] - rows[i])
            printf "%-26s %8d %6d %6s %6d %6d %6s %8s %6s  %s\n", name[i], req[i], lost,
                post ? dup : "-", cf[i] + oth[i], serr[i], post ? cr[i] : "-",
                post ? rep[i] : "-", post ? rows[i] : "-", note
            printf "%s,,,,,,,,,,%d,%d,%s,%s\n", name[i], req[i], lost, post ? dup : "",
                note >> csv
            lost_of[name[i]] = lost; dup_of[name[i]] = dup
        }
        print "haproxy: default retries (3, same server) + health checks every 500 ms;" \
            " haproxy-retry: + retry-on all-retryable-errors, option redispatch"
        print "lost: non-2xx + socket errors; dup: 409 = a POST applied twice (emails are" \
            " unique); replayed: 201s answered from the Idempotency-Key record"
        print "\nfailover targets (kill -9 of one of two upstreams under load):"
        for (m = 1; m <= 2; m++) {
            r = (m == 1 ? "failover-get-cmesh" : "failover-post-cmesh")
            if (!(r in idx)) { printf "  %s: not measured (gateway not available)\n", r; continue }
            ok = lost_of[r] == 0 && dup_of[r] == 0
            printf "  %-22s lost %d, dup %d (want 0, 0)  %s\n", r, lost_of[r], dup_of[r],
                ok ? "MET" : "NOT MET"
        }
    }' "$1"
}
