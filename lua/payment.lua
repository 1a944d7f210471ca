-- payment.lua: the payment gateway interface of the flash purchase, with its built-in simulator.
--
--   payment.charge(order_id, amount) -> true | nil, "declined"
--   payment.refund(order_id, amount) -> true (by order id: an order is refunded at most once, and an
--                                           order never charged is not refunded; flash.lua may ask twice)
--
-- The simulator declines a charge with probability app.payment.failure_rate (default 0: every
-- charge succeeds; the demo config sets 0.2) and, with app.payment.latency (s, default 0), takes that
-- long, as a remote gateway would. Its randomness is seeded per worker (payment.start, an
-- init_worker), so two workers do not draw the same sequence. A real gateway replaces charge().
local host = require "host"

local random, randomseed, type, floor = math.random, math.randomseed, type, math.floor

local _M = {}

local function conf()
    local app = host.config.app
    local p = type(app) == "table" and app.payment
    return type(p) == "table" and p or {}
end

function _M.charge(_, amount)
    local c = conf()
    if type(c.latency) == "number" and c.latency > 0 then host.sleep(c.latency) end
    if amount < 0 then return nil, "declined" end
    if random() < (tonumber(c.failure_rate) or 0) then return nil, "declined" end
    return true
end

-- payment.refund(order_id, amount): gives a charge back (the simulator has nothing to do).
function _M.refund(_, _)
    return true
end

function _M.start()
    randomseed(floor(host.now() * 1000) % 2147483647 + (tonumber(host.pid) or 0) * 7919
        + (tonumber(host.worker_id) or 0))
end

return _M
