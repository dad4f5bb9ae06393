# scripts/proc.sh: process plumbing for the shell scripts that start servers (bench,
# contract and metrics tests), and the bench's template renderer for peer configs. Source
# it; it defines functions and the PIDS array.
# Every process started with proc_track is stopped by proc_cleanup (call it from a trap).

PIDS=() # processes this script started

# A free loopback port from the kernel (bind to 0). The window between closing the
# probe socket and the server binding the port is accepted.
free_port()
{
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# proc_track PID: stop PID in proc_cleanup.
proc_track()
{
    PIDS+=("$1")
}

# proc_stop PID: SIGTERM, up to 5 s for the drain, then SIGKILL; reaps and forgets it.
proc_stop()
{
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# proc_cleanup: stops every tracked process (all get SIGTERM first, so they drain together).
proc_cleanup()
{
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    while [ ${#PIDS[@]} -gt 0 ]; do
        proc_stop "${PIDS[0]}"
    done
}

# wait_http URL PID LOG [SECONDS]: polls URL until it answers 2xx (0); returns 1, showing
# the end of LOG, when PID exits first or SECONDS (10) pass.
wait_http()
{
    local url=$1 pid=$2 log=$3 secs=${4:-10}
    for _ in $(seq $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$url: the server exited before answering; last stderr:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$url: no answer within $secs s; last stderr:" >&2
    tail -n 20 "$log" >&2 || true
    return 1
}

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
    sys.exit("%s: a placeholder was left unrendered" % out)
open(out, "w", encoding="utf-8").write(text)
PY
}
