#!/usr/bin/env bash
# tests/scripts/install.sh: `make install` puts cmesh in $(DESTDIR)$(PREFIX)/bin, for the
# default PREFIX (/usr/local) and a given one, and the installed binary runs.
# Env: CMESH_BIN (path of build/cmesh; its directory is the build tree used), CMESH_SRC.
set -euo pipefail

: "${CMESH_BIN:?CMESH_BIN is not set}"
: "${CMESH_SRC:?CMESH_SRC is not set}"
build=$(cd "$(dirname "$CMESH_BIN")" && pwd)
dir=$(mktemp -d /tmp/cmesh-install-XXXXXX)
trap 'rm -rf "$dir"' EXIT

fail() {
    echo "install.sh: FAIL: $*" >&2
    exit 1
}

want=$("$CMESH_BIN" --version | head -n 1)

# default PREFIX
make -s -C "$CMESH_SRC" install BUILD="$build" DESTDIR="$dir/a" JOBS=1 >"$dir/a.log" 2>&1 ||
    { cat "$dir/a.log" >&2; fail "make install exited $?"; }
[ -x "$dir/a/usr/local/bin/cmesh" ] || fail "no executable $dir/a/usr/local/bin/cmesh"
got=$("$dir/a/usr/local/bin/cmesh" --version | head -n 1)
[ "$got" = "$want" ] || fail "installed binary says '$got', built one '$want'"
# DESTDIR is a staging root: nothing outside it
extra=$(cd "$dir/a" && find . -type f | grep -v '^./usr/local/bin/cmesh$' || true)
[ -z "$extra" ] || fail "make install wrote more than bin/cmesh: $extra"

# PREFIX given
make -s -C "$CMESH_SRC" install BUILD="$build" DESTDIR="$dir/b" PREFIX=/opt/cmesh JOBS=1 \
    >"$dir/b.log" 2>&1 || { cat "$dir/b.log" >&2; fail "make install PREFIX=/opt/cmesh failed"; }
[ -x "$dir/b/opt/cmesh/bin/cmesh" ] || fail "no executable $dir/b/opt/cmesh/bin/cmesh"
[ ! -e "$dir/b/usr/local" ] || fail "PREFIX=/opt/cmesh still wrote under /usr/local"
echo "install.sh: ok"
