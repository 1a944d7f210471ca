-- bench/flash_entry_cpu.lua: the CPU time of the flash entry's Lua, in process (run with `fcfs run`,
-- not part of the app; bench/flash_vs_peer.sh runs it after the comparison).
--
--   fcfs -c CONF run bench/flash_entry_cpu.lua SOLD_PID BUY_PID TOKENS_FILE [N [buy|garbage]]
--
-- Hands N requests (default 20000) at a time straight to the app's handler, the way the host does
-- for POST /api/flash/products/:id/entry: to SOLD_PID (stock 0: the stock gate's answer) by N
-- members (the first N lines of TOKENS_FILE), then by a crowd of 1,000 members clicking again (their
-- tokens in the token cache), then to BUY_PID (plenty of stock: one entry script each, one request
-- at a time) by the next N members. Prints the process CPU time per request (os.clock: no HTTP, no
-- socket, not the Redis server's time), which a busy machine disturbs far less than req/s:
--   CPU sold_new_us=.. sold_again_us=.. buy_us=.. (Lua + Redis client, per entry)
-- With "buy" after N, only the buy path (the members of lines N + 1 .. 2N): bench/flash_entry_cost.sh
-- counts its instructions under callgrind. With "garbage", then the Lua bytes allocated per entry
-- (the collector stopped), by new members (lines 2N + 1 .. 3N) and the crowd again on SOLD_PID and by
-- new members (lines 3N + 1 .. 4N) on BUY_PID:
--   GARBAGE sold_new_bytes=.. sold_again_bytes=.. buy_bytes=..
local host = require "host"
local app = require "app"

local sold, buy, file, n, only = tonumber((...)), tonumber((select(2, ...))), select(3, ...),
    tonumber((select(4, ...))), select(5, ...)
n = n or 20000
if not (sold and buy and file) then
    io.stderr:write("usage: fcfs -c CONF run bench/flash_entry_cpu.lua SOLD_PID BUY_PID TOKENS_FILE "
        .. "[N [buy|garbage]]\n")
    return 2
end
local need = (only == "garbage" and 4 or 2) * n
local tokens = {}
for line in io.lines(file) do
    tokens[#tokens + 1] = "Bearer " .. line
    if #tokens == need then break end
end
assert(#tokens == need, "need " .. need .. " tokens")

local function request(path, i, token)
    return { method = "POST", path = path, query = "", request_id = "bench" .. i, remote_addr = "127.0.0.1",
        headers = { host = "bench", authorization = token } }
end

-- per request CPU microseconds of N entries to pid by the members of tokens from..from+crowd-1 in
-- turn; every answer must be want
local function measure(pid, from, want, crowd)
    local path = "/api/flash/products/" .. pid .. "/entry"
    local clock = os.clock
    local t0 = clock()
    for i = 0, n - 1 do
        local status, body = app:handle(request(path, i, tokens[from + i % crowd]))
        if status ~= want then error(("entry %d: %s %s"):format(i, tostring(status), tostring(body)), 0) end
    end
    return (clock() - t0) * 1e6 / n
end

-- Lua bytes allocated per entry by the app (the collector stopped; less what making the request
-- tables of the loop allocates): in a steady state, its garbage.
local function garbage(pid, from, want, crowd)
    local path = "/api/flash/products/" .. pid .. "/entry"
    collectgarbage("collect")
    collectgarbage("stop")
    local k0 = collectgarbage("count")
    local keep = {}
    for i = 0, n - 1 do keep[i + 1] = request(path, i, tokens[from + i % crowd]) end
    local k1 = collectgarbage("count")
    for i = 1, n do
        local status, body = app:handle(keep[i])
        if status ~= want then error(("entry %d: %s %s"):format(i, tostring(status), tostring(body)), 0) end
    end
    local k2 = collectgarbage("count")
    collectgarbage("restart")
    return (k2 - k1) * 1024 / n, (k1 - k0) * 1024 / n
end

if only == "buy" then
    print(("CPU buy_us=%.2f n=%d (in process: Lua + Redis client, per entry)"):format(measure(buy, n + 1, 201, n), n))
    return 0
end
local s1 = measure(sold, 1, 409, n)
measure(sold, 1, 409, 1000) -- the crowd's tokens into the cache
local s2 = measure(sold, 1, 409, 1000)
host.sleep(0.01) -- back to the event loop, whose clock the long loops above left behind (Redis timeouts)
local b = measure(buy, n + 1, 201, n)
print(("CPU sold_new_us=%.2f sold_again_us=%.2f buy_us=%.2f n=%d (in process: Lua + Redis client, per entry)")
    :format(s1, s2, b, n))
if only == "garbage" then
    -- new members (the tokens after those above) on both paths, then the crowd clicking again
    local g_new = garbage(sold, 2 * n + 1, 409, n)
    local g_again = garbage(sold, 1, 409, 1000)
    local g_buy, harness = garbage(buy, 3 * n + 1, 201, n)
    print(("GARBAGE sold_new_bytes=%.0f sold_again_bytes=%.0f buy_bytes=%.0f n=%d (Lua bytes allocated per entry by "
        .. "the app; the request table the loop makes, %.0f bytes, not counted)"):format(g_new, g_again, g_buy, n,
        harness))
end
return 0
