#!/usr/bin/env bash
# scripts/deps.sh: installs what cmesh needs to build, test and bench, and nothing twice.
# Debian packages are checked with dpkg-query first; apt-get runs only for what is missing.
# npm test tools go into tests/node_modules (lockfile-pinned), again only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(
    # build
    build-essential cmake ninja-build pkg-config clang-format cppcheck
    # libraries (see DESIGN.md: Dependencies)
    # node-llhttp: llhttp's C sources, compiled into the binary (CMakeLists.txt)
    libuv1-dev node-llhttp libjansson-dev libsqlite3-dev libpq-dev libssl-dev
    libfyaml-dev libjwt-dev
    # tests: Criterion, libcurl as the independent client, promtool, node for contract tools
    libcriterion-dev libcurl4-openssl-dev prometheus nodejs npm curl sqlite3
    # the dashboard's browser test: Debian's Chromium, driven by npm playwright-core
    chromium
    # tests and bench on PostgreSQL: initdb/pg_ctl (tests start their own server), pgbench
    postgresql postgresql-contrib
    # bench peers and load
    wrk nginx-light haproxy h2o
)

missing=()
for p in "${debs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
# nodejs/npm may come from outside Debian on a developer machine; a working node is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
    keep=()
    for p in "${missing[@]}"; do
        case "$p" in nodejs|npm) ;; *) keep+=("$p") ;; esac
    done
    missing=("${keep[@]+"${keep[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Package scripts must not start daemons (nginx on :80, prometheus): tests start their own.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        made_policy=1
    fi
    trap '[ $made_policy -eq 1 ] && $sudo rm -f "$policy"' EXIT
    # A fresh machine may have empty or stale lists.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm tools for the contract test (OpenAPI lint, schema validation).
if [ -f tests/contract/package.json ] && [ ! -d tests/contract/node_modules ]; then
    echo "deps: npm ci in tests/contract"
    (cd tests/contract && npm ci --no-audit --no-fund --loglevel=error)
fi
# playwright-core for the dashboard's browser test (it drives /usr/bin/chromium; it never
# downloads a browser of its own).
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
    echo "deps: npm ci in tests/browser"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "deps: ok"
