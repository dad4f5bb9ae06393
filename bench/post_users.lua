-- bench/post_users.lua: wrk script for POST /users creates (used by bench/run.sh).
-- Every request carries a unique email: wrk thread id + per-thread counter + a
-- random salt drawn once per thread, so repeated runs on one database never hit 409.
-- Usage: wrk -s bench/post_users.lua URL -- [tag]

local threads = 0

-- setup runs in wrk's main Lua state, once per thread, before the threads start.
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
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

local counter = 0
local prefix

function init(args)
    local tag = args[1] or "run"
    prefix = string.format("%s.t%d.%s", tag, tid or 0, random_salt())
end

local headers = { ["Content-Type"] = "application/json" }

function request()
    counter = counter + 1
    local body = string.format('{"name":"Bench User %d","email":"u%d.%s@bench.example.com"}',
        counter, counter, prefix)
    return wrk.format("POST", "/users", headers, body)
end
