-- cli/reconcile.lua: proves a flash product's stock adds up.
--
--   fcfs -c etc/fcfs.lua run lua/cli/reconcile.lua PRODUCT_ID
--
-- Prints initial (MySQL products.stock), remaining and held (Redis: units in stock, holds HELD or
-- being paid), paid (MySQL: flash_orders PAID) and Redis' own paid count. Exit status 0 when
-- initial = remaining + held + paid, 1 when it does not, 2 on bad input or a missing product /
-- Redis state, 3 on a backend error.
local host = require "host"
local flash = require "flash"

local arg = ...
local pid = tonumber(arg)
if not pid or pid < 1 or pid % 1 ~= 0 then
    io.stderr:write("usage: fcfs -c FILE run lua/cli/reconcile.lua PRODUCT_ID\n")
    return 2
end

local rows, err = host.mysql.query("SELECT stock FROM products WHERE id = ? AND type = 'FLASH'", pid)
if not rows then
    io.stderr:write("reconcile: MySQL: ", tostring(err), "\n")
    return 3
end
if not rows[1] then
    io.stderr:write("reconcile: no FLASH product ", pid, "\n")
    return 2
end
local initial = rows[1].stock
local paid_rows
paid_rows, err = host.mysql.query("SELECT COUNT(*) AS n FROM flash_orders WHERE product_id = ? AND state = 'PAID'",
    pid)
if not paid_rows then
    io.stderr:write("reconcile: MySQL: ", tostring(err), "\n")
    return 3
end
local paid = paid_rows[1].n
local st
st, err = host.redis.call("HMGET", flash.keys_of(pid).s, "cap", "seq", "out", "paid")
if not st then
    io.stderr:write("reconcile: Redis: ", tostring(err), "\n")
    return 3
end
if st[1] == host.null or st[1] == nil then
    io.stderr:write("reconcile: product ", pid, " has no flash state in Redis (no entry yet)\n")
    return 2
end
local seq = tonumber(st[2]) -- redis/flash.lua: remaining = cap - seq, held = seq - out
local remaining, held = tonumber(st[1]) - seq, seq - tonumber(st[3])
local ok = initial == remaining + held + paid
io.stdout:write(string.format("product %d: initial %d, remaining %d, held %d, paid %d (Redis paid %d): %s\n", pid,
    initial, remaining, held, paid, tonumber(st[4]), ok and "OK" or "MISMATCH"))
return ok and 0 or 1
