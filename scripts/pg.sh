#!/usr/bin/env bash
# scripts/pg.sh: a throw-away PostgreSQL server for tests and benches, sourced.
# pg_start DIR: initdb + pg_ctl start in DIR (created, owned by nobody, whose parents
#   nobody must be able to enter: PostgreSQL
#   refuses to run as root), listening only on a unix socket in DIR, superuser cmesh,
#   trust auth, fsync off (no test crashes the machine; a killed or restarted server
#   still recovers from the WAL in the page cache). Bounded: 60 s to start.
# pg_stop DIR: fast stop (bounded), then removes DIR.
# pg_url DIR DB: the libpq URI of database DB on that server.
# pg_createdb DIR DB: creates DB (UTF8, C collation).
# Run as a script: pg.sh run CMD...: starts a server in a fresh directory, exports
# CMESH_TEST_PG=DIR for CMD, runs it, stops and removes the server whatever CMD did.

pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] || { echo "pg.sh: no PostgreSQL server (apt-get install postgresql)" >&2; return 1; }
    echo "$d"
}

pg_as() { # runs a server tool as nobody, unless we are not root already
    if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

# pg_ctl_in DIR start | stop -m MODE: the server of DIR, as pg_start set it up (bounded).
pg_ctl_in() {
    local dir=$1 bin
    shift
    bin=$(pg_bin) || return 1
    if [ "$1" = start ]; then
        pg_as timeout 60 "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 50 \
            -o "-k $dir -c listen_addresses='' -c fsync=off -c max_connections=200 ${PG_EXTRA_OPTS:-}" \
            start >/dev/null || { tail -20 "$dir/server.log" >&2; return 1; }
    else
        pg_as timeout 60 "$bin/pg_ctl" -D "$dir/data" -w -t 50 "$@" >/dev/null
    fi
}

pg_start() {
    local dir=$1 bin
    bin=$(pg_bin) || return 1
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown nobody "$dir"
    chmod 0755 "$dir"
    pg_as timeout 60 "$bin/initdb" -D "$dir/data" -U cmesh --auth=trust --encoding=UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    pg_ctl_in "$dir" start
}

pg_stop() {
    local dir=$1 bin
    bin=$(pg_bin) || return 1
    [ -d "$dir/data" ] && pg_as timeout 30 "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 25 stop \
        >/dev/null 2>&1
    rm -rf "$dir"
}

pg_url() { echo "postgresql://cmesh@/$2?host=$1"; }

pg_createdb() {
    "$(pg_bin)/psql" -X -q -h "$1" -U cmesh -d postgres -c "CREATE DATABASE \"$2\"" >/dev/null
}

if [ "${1:-}" = run ]; then
    shift
    set -u
    dir=$(mktemp -d /tmp/cmesh-pg.XXXXXX)
    trap 'pg_stop "$dir"' EXIT
    pg_start "$dir" || exit 1
    export CMESH_TEST_PG=$dir CMESH_TEST_DB=postgres
    "$@"
    exit $?
fi
