#!/usr/bin/env bash
# make run: `cmesh up` with the shipped cmesh.yaml in the foreground (gateway :8080,
# 2 users, 2 orders, control API :9000, data and state under data/). Waits until every
# instance is ready, prints the URLs and a ready-to-paste curl with a token, and stops
# everything gracefully on Ctrl-C, SIGTERM and a terminal hangup (SIGHUP) of this script
# (cmesh up itself stops on Ctrl-C and SIGTERM, and reloads cmesh.yaml on SIGHUP). Exits non-zero when the system cannot start
# (a port already in use, a bad cmesh.yaml) or the control plane dies.
set -euo pipefail
bin=${1:-build/cmesh}
config=${CMESH_CONFIG:-cmesh.yaml}

"$bin" up --config "$config" &
up=$!
stop() {
    trap - INT TERM HUP
    kill -TERM "$up" 2>/dev/null || true
    wait "$up" 2>/dev/null || true
    exit 0
}
trap stop INT TERM HUP

# addresses from the file's control: and gateway: sections (their first listen: key)
listen_of() { awk -v s="$1:" '$1 == s {c=1; next} /^[^ #]/ {c=0} c && $1 == "listen:" {print $2; exit}' "$config"; }
api=$(listen_of control)
api=${api:-127.0.0.1:9000}
gw=$(listen_of gateway)
gw=${gw:-127.0.0.1:8080}
# the control API answers /v1/ready with 200 once every instance is ready
for _ in $(seq 300); do
    if ! kill -0 "$up" 2>/dev/null; then
        rc=0
        wait "$up" || rc=$?
        echo "make run: cmesh up exited at start (status $rc); see its message above" >&2
        exit 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "http://$api/v1/ready" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

token=$("$bin" token --config "$config" --sub demo \
    --scope "users:read users:write orders:read orders:write" 2>/dev/null || true)
cat <<MSG
cmesh is up (Ctrl-C stops everything gracefully):
  gateway  http://$gw/users  http://$gw/orders
  control  http://$api/v1/services   (cmesh status, cmesh logs users/0, cmesh scale users 3)
  try:
    curl -H "Authorization: Bearer $token" http://$gw/users
MSG
rc=0
wait "$up" || rc=$?
trap - INT TERM HUP
exit "$rc"
