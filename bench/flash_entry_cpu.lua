-- bench/flash_entry_cpu.lua: the CPU time of the flash entry's Lua, in process (run with `fcfs run`,
-- not part of the app; bench/flash_vs_peer.sh runs it after the comparison).
--
--   fcfs -c CONF run bench/flash_entry_cpu.lua SOLD_PID BUY_PID TOKENS_FILE [N [buy]]
--
-- Hands N requests (default 20000) at a time straight to the app's handler, the way the host does
-- for POST /api/flash/products/:id/entry: to SOLD_PID (stock 0: the stock gate's answer) by N
-- members (the first N lines of TOKENS_FILE), then by a crowd of 1,000 members clicking again (their
-- tokens in the token cache), then to BUY_PID (plenty of stock: one entry script each, one request
-- at a time) by the next N members. Prints the process CPU time per request (os.clock: no HTTP, no
-- socket, not the Redis server's time), which a busy machine disturbs far less than req/s:
--   CPU sold_new_us=.. sold_again_us=.. buy_us=.. (Lua + Redis client, per entry)
-- With "buy" after N, only the buy path (the members of lines N + 1 .. 2N): bench/flash_entry_cost.sh
-- counts its instructions under callgrind. Before the buy path's clock starts, its first G members
-- (G = N / 4, at most 1,000) buy with the collector stopped: the Lua garbage per buy (bytes the
-- collector will have to free, the token check's included) is printed as garbage_b; the clock counts
-- the other N - G.
local host = require "host"
local app = require "app"

local sold, buy, file, n, only = tonumber((...)), tonumber((select(2, ...))), select(3, ...),
    tonumber((select(4, ...))), select(5, ...)
n = n or 20000
if not (sold and buy and file) then
    io.stderr:write("usage: fcfs -c CONF run bench/flash_entry_cpu.lua SOLD_PID BUY_PID TOKENS_FILE [N [buy]]\n")
    return 2
end
local tokens = {}
for line in io.lines(file) do
    tokens[#tokens + 1] = "Bearer " .. line
    if #tokens == 2 * n then break end
end
assert(#tokens == 2 * n, "need " .. 2 * n .. " tokens")

-- per request CPU microseconds of count (default N) entries to pid by the members of tokens
-- from..from+crowd-1 in turn; every answer must be want
local function measure(pid, from, want, crowd, count)
    count = count or n
    local path = "/api/flash/products/" .. pid .. "/entry"
    local clock = os.clock
    local t0 = clock()
    for i = 0, count - 1 do
        local status, body = app:handle({ method = "POST", path = path, query = "", request_id = "bench" .. i,
            remote_addr = "127.0.0.1", headers = { host = "bench", authorization = tokens[from + i % crowd] } })
        if status ~= want then error(("entry %d: %s %s"):format(i, tostring(status), tostring(body)), 0) end
    end
    return (clock() - t0) * 1e6 / count
end

-- the buy path: Lua garbage bytes per buy (the first G members, collector stopped), then CPU
-- microseconds per buy (the others)
local function buy_path()
    local g = math.min(1000, math.floor(n / 4))
    collectgarbage()
    collectgarbage("stop")
    local kb = collectgarbage("count")
    measure(buy, n + 1, 201, g, g)
    local garbage = (collectgarbage("count") - kb) * 1024 / g
    collectgarbage("restart")
    return measure(buy, n + 1 + g, 201, n - g, n - g), garbage
end

if only == "buy" then
    local b, garbage = buy_path()
    print(("CPU buy_us=%.2f garbage_b=%.0f n=%d (in process: Lua + Redis client, per entry)"):format(b, garbage, n))
    return 0
end
local s1 = measure(sold, 1, 409, n)
measure(sold, 1, 409, 1000) -- the crowd's tokens into the cache
local s2 = measure(sold, 1, 409, 1000)
host.sleep(0.01) -- back to the event loop, whose clock the long loops above left behind (Redis timeouts)
local b, garbage = buy_path()
print(("CPU sold_new_us=%.2f sold_again_us=%.2f buy_us=%.2f garbage_b=%.0f n=%d (in process: Lua + Redis "
    .. "client, per entry)"):format(s1, s2, b, garbage, n))
return 0
