#!/usr/bin/env bash
# bench/pg.sh: the `pg` group of `make bench`. On one throw-away PostgreSQL server
# (scripts/pg.sh, fsync on, unix socket), with the same number of client connections:
#   pg-get     cmesh users GET /users/{id} rps (wrk)   vs  pgbench -S tps (select only)
#   pg-create  cmesh users POST /users creates/s (wrk) vs  pgbench -N tps (simple update)
# and the ratios beside the issue's targets (GET >= 0.8x, creates >= 2x), and the whole
# machine's CPU time per operation during each run (every process: the client, cmesh or
# pgbench, the server's backends; from /proc/stat, so run it on a quiet machine).
# Each pair runs at every client count in PG_BENCH_CONNECTIONS: 8 (few clients: a create's
# latency, two round trips and an fsync per write group, bounds the rate) and 64 (many).
# Usage: bench/pg.sh [path/to/cmesh]   env: PG_BENCH_DURATION (10, s)
#        PG_BENCH_CONNECTIONS ("8 64") PG_BENCH_WORKERS (1: cmesh workers)
set -euo pipefail

BIN=${1:-build/cmesh}
[ -x "$BIN" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${PG_BENCH_DURATION:-10}
CONN_LIST=${PG_BENCH_CONNECTIONS:-8 64}
WORKERS=${PG_BENCH_WORKERS:-1}

# shellcheck source=scripts/proc.sh
. "$ROOT/scripts/proc.sh"
# shellcheck source=scripts/pg.sh
. "$ROOT/scripts/pg.sh"
PGBIN=$(pg_bin)
for tool in wrk curl "$PGBIN/pgbench"; do
    command -v "$tool" >/dev/null || { echo "bench pg: $tool not found; run make deps" >&2; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmesh-pgbench.XXXXXX")
chmod 0755 "$TMP" # the server runs as nobody, under it
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup()
{
    proc_cleanup
    pg_stop "$TMP/pg"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# durable commits on both sides: the server's WAL is fsynced at every commit
PG_EXTRA_OPTS="-c fsync=on -c synchronous_commit=on" pg_start "$TMP/pg"
pg_createdb "$TMP/pg" users
pg_createdb "$TMP/pg" pgbench
"$PGBIN/pgbench" -h "$TMP/pg" -U cmesh -i -s 1 -q pgbench >/dev/null 2>&1

PORT=$(free_port)
"$BIN" users --listen "127.0.0.1:$PORT" --db "$(pg_url "$TMP/pg" users)" --workers "$WORKERS" \
    --access-log off 2>>"$TMP/cmesh.stderr" &
PID=$!
proc_track "$PID"
wait_http "http://127.0.0.1:$PORT/healthz" "$PID" "$TMP/cmesh.stderr"
curl -fsS -o /dev/null -H 'Content-Type: application/json' \
    -d '{"name":"Bench User","email":"bench.user@example.com"}' "http://127.0.0.1:$PORT/users"

# wrk_rate FILE: the 2xx rate of a wrk run (non-2xx answers do not count)
wrk_rate()
{
    awk '/ requests in / { r = $1; s = $4; sub(/s,?$/, "", s) }
         /Non-2xx or 3xx responses:/ { n = $NF }
         END { printf "%.0f\n", (s > 0 ? (r - n) / s : 0) }' "$1"
}
pgbench_tps()
{
    "$PGBIN/pgbench" -h "$TMP/pg" -U cmesh -n -c "$CONNS" -j 1 -T "$DUR" "$@" pgbench 2>/dev/null |
        awk '/^tps = / { printf "%.0f\n", $3 }'
}

# busy: the machine's busy CPU time so far, in microseconds (/proc/stat, all CPUs)
busy()
{
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.0f\n", ($2 + $3 + $4 + $7 + $8) * 1e6 / hz }' \
        /proc/stat
}
# per_op BEFORE AFTER RATE: CPU microseconds per operation of a DUR-second run
per_op()
{
    awk -v a="$1" -v b="$2" -v r="$3" -v d="$DUR" 'BEGIN { printf "%.0f\n", (r > 0 ? (b - a) / (r * d) : 0) }'
}

# run_at CONNS: the four runs at CONNS client connections, one row each pair
run_at()
{
    CONNS=$1
    B0=$(busy)
    wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$PORT/users/1" >"$TMP/get.txt" 2>&1
    B1=$(busy)
    GET=$(wrk_rate "$TMP/get.txt")
    SEL=$(pgbench_tps -S)
    B2=$(busy)
    wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$ROOT/bench/post_users.lua" "http://127.0.0.1:$PORT/users" \
        -- "pg$RANDOM" >"$TMP/post.txt" 2>&1
    B3=$(busy)
    CRE=$(wrk_rate "$TMP/post.txt")
    UPD=$(pgbench_tps -N)
    B4=$(busy)
    awk -v g="$GET" -v s="$SEL" -v c="$CRE" -v u="$UPD" -v n="$CONNS" \
        -v gc="$(per_op "$B0" "$B1" "$GET")" -v sc="$(per_op "$B1" "$B2" "$SEL")" \
        -v cc="$(per_op "$B2" "$B3" "$CRE")" -v uc="$(per_op "$B3" "$B4" "$UPD")" 'BEGIN {
        printf "%-10s %6d %12d %14d %8.2f %8s %6d vs %5d\n", "pg-get", n, g, s, (s > 0 ? g / s : 0), ">=0.8", gc, sc
        printf "%-10s %6d %12d %14d %8.2f %8s %6d vs %5d\n", "pg-create", n, c, u, (u > 0 ? c / u : 0), ">=2", cc, uc
    }'
}

echo "bench pg: ${DUR}s each run, cmesh users --workers $WORKERS, fsync on"
printf '%-10s %6s %12s %14s %8s %8s %14s\n' row conns cmesh/s pgbench-tps ratio target cpu_us/op
for c in $CONN_LIST; do
    run_at "$c"
done
