-- bench/failover.lua: wrk script for the failover rows of `make bench` (bench/failover.sh).
-- Counts what the client saw: 2xx, 201, 409, other statuses, and 201s a service answered
-- as an idempotent replay; done() prints one "failover:" line with those counts and wrk's
-- socket errors (connect/read/write/timeout).
-- Usage: wrk -s bench/failover.lua URL -- get /users/1
--        wrk -s bench/failover.lua URL -- post
-- post: POST /users, each request with a unique email AND a unique Idempotency-Key
-- (thread id + per-thread counter + a random salt drawn once per thread).

local threads = {}

-- setup runs in wrk's main Lua state, once per thread, before the threads start.
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

local function random_salt()
    local f = io.open("/dev/urandom", "rb")
    if f then
        local b = f:read(6)
        f:close()
        return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
    end
    math.randomseed(os.time() + (tid or 0) * 7919)
    return string.format("%08x", math.random(0, 0x7fffffff))
end

-- Per-thread counters: globals, so done() can read them with thread:get(). sent counts
-- requests built, so sent - answered - errors = requests still in flight when wrk stopped.
ok, created, conflict, other, replayed, sent = 0, 0, 0, 0, 0, 0

local mode, path, salt
local post_headers = { ["Content-Type"] = "application/json" }

function init(args)
    mode = args[1] or "get"
    path = args[2] or "/users/1"
    salt = random_salt()
end

function request()
    sent = sent + 1
    if mode ~= "post" then
        return wrk.format("GET", path)
    end
    local id = string.format("%d.%s.%d", tid or 0, salt, sent)
    post_headers["Idempotency-Key"] = "k." .. id
    return wrk.format("POST", "/users", post_headers,
        string.format('{"name":"n","email":"e%s@x.io"}', id))
end

function response(status, headers, body)
    if status >= 200 and status < 300 then
        ok = ok + 1
        if status == 201 then
            created = created + 1
        end
        for k, v in pairs(headers) do
            if k:lower() == "idempotent-replayed" and v == "true" then
                replayed = replayed + 1
            end
        end
    elseif status == 409 then
        conflict = conflict + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local sum = { ok = 0, created = 0, conflict = 0, other = 0, replayed = 0, sent = 0 }
    for _, t in ipairs(threads) do
        for k in pairs(sum) do
            sum[k] = sum[k] + (t:get(k) or 0)
        end
    end
    local e = summary.errors
    io.write(string.format("failover: requests=%d ok=%d created=%d conflict=%d other=%d " ..
        "replayed=%d sent=%d connect=%d read=%d write=%d timeout=%d secs=%.3f\n",
        summary.requests, sum.ok, sum.created, sum.conflict, sum.other, sum.replayed, sum.sent,
        e.connect, e.read, e.write, e.timeout, summary.duration / 1e6))
end
