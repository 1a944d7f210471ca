-- jobs/lifecycle.lua: the order lifecycle of API.md "Orders", moved by a scheduler on host timers.
--
--   ORDERED          -> SHIPPING   at ordered_at + 1D
--   SHIPPING         -> DELIVERED  at ordered_at + 2D
--   RETURN_REQUESTED -> RETURNED   at return_requested_at + 1D, the stock back then
--
-- D = host.config.app.day_seconds (default 86400; may be fractional). The time written is the
-- scheduled one (base + n D, computed in SQL), never the time the job ran, so a transition made late
-- (downtime, a slow run) still shows when it was due. State lives only in MySQL.
--
-- Exactly once: the scheduler claims due rows with SELECT ... FOR UPDATE SKIP LOCKED and updates them
-- with the status as a condition, in one transaction with the history row (order_transitions, whose
-- primary key (order_id, to_status) refuses a second copy of a transition). A concurrent runner on
-- another host skips the locked rows and, after the commit, no longer finds them due.
--
-- One runner per node: worker 0 (lifecycle.start from app:init_worker). A run is a chain of
-- host.timer.at: the next run is armed when the previous one ended, so runs never overlap. Each run
-- does at most app.lifecycle_max_batches (10) batches of app.lifecycle_batch (100) rows per step,
-- so catching up after downtime is bounded and a reload (premature timer, host.exiting) stops it
-- between batches. Interval: app.lifecycle_interval seconds (etc/fcfs.lua: 1; absent: no scheduler).
--
-- lifecycle.advance(tx, id) applies the due transitions of one order whose row the caller has
-- locked (cancel and return decide on the status the order has by now, not the last run's).
local web = require "lib.web"
local fields = require "lib.fields"
local idempotency = require "lib.idempotency"
local products = require "products"
local host = require "host"

local tonumber, tostring, pcall = tonumber, tostring, pcall
local format, concat, floor = string.format, table.concat, math.floor
local check = web.check
local app_conf = fields.app_conf

local _M = {}

local STEPS = {
    { from = "ORDERED", to = "SHIPPING", col = "shipped_at", base = "ordered_at", days = 1 },
    { from = "SHIPPING", to = "DELIVERED", col = "delivered_at", base = "ordered_at", days = 2 },
    { from = "RETURN_REQUESTED", to = "RETURNED", col = "returned_at", base = "return_requested_at", days = 1,
        restock = true },
}

-- D in whole microseconds (INTERVAL ... MICROSECOND is exact; fractional SECOND intervals are not).
function _M.day_us()
    return floor(app_conf("day_seconds", 86400) * 1e6 + 0.5)
end

-- lifecycle.restock(tx, where): the units of the orders matched by `where` (on order_items) go back
-- to stock, products locked in id order; returns {[product id] = units} (for products.restocked,
-- after the commit), or nil when none.
function _M.restock(tx, where, ...)
    local rows = check(tx:query("SELECT product_id, CAST(SUM(quantity) AS UNSIGNED) AS q FROM order_items WHERE "
        .. where .. " GROUP BY product_id ORDER BY product_id", ...))
    if #rows == 0 then return nil end
    local units = {}
    for i = 1, #rows do
        check(tx:query("UPDATE products SET stock = stock + ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ?",
            rows[i].q, rows[i].product_id))
        units[rows[i].product_id] = rows[i].q
    end
    return units
end

-- Applies one step to the rows of `where` that are in its `from` status and due: count, product ids.
local function apply(tx, step, where, ...)
    local d = _M.day_us() * step.days
    local r = check(tx:query(format("UPDATE orders SET status = '%s', %s = %s + INTERVAL %d MICROSECOND WHERE %s "
        .. "AND status = '%s' AND %s <= UTC_TIMESTAMP(3) - INTERVAL %d MICROSECOND", step.to, step.col, step.base, d,
        where, step.from, step.base, d), ...))
    if r.affected_rows == 0 then return 0, nil end
    check(tx:query(format("INSERT INTO order_transitions (order_id, from_status, to_status, at) SELECT id, '%s', "
        .. "'%s', %s FROM orders WHERE %s AND status = '%s'", step.from, step.to, step.col, where, step.to), ...))
    local units
    if step.restock then
        units = _M.restock(tx, "order_id IN (SELECT id FROM orders WHERE " .. where .. " AND status = 'RETURNED')", ...)
    end
    return r.affected_rows, units
end

-- lifecycle.advance(tx, id) -> {[product id] = units back} (or nil); the caller holds the row lock.
function _M.advance(tx, id)
    local changed
    for i = 1, #STEPS do
        local _, units = apply(tx, STEPS[i], "id = ?", id)
        changed = units or changed
    end
    return changed
end

-- One batch of one step: number of orders moved.
local function batch(step, size)
    local n, units = check(host.mysql.tx(function(tx)
        local d = _M.day_us() * step.days
        local rows = check(tx:query(format("SELECT id FROM orders WHERE status = '%s' AND %s <= UTC_TIMESTAMP(3) "
            .. "- INTERVAL %d MICROSECOND ORDER BY %s LIMIT %d FOR UPDATE SKIP LOCKED", step.from, step.base, d,
            step.base, size)))
        if #rows == 0 then return 0 end
        local list = {}
        for i = 1, #rows do list[i] = format("%d", rows[i].id) end
        local moved, changed = apply(tx, step, "id IN (" .. concat(list, ",") .. ")")
        return moved == 0 and 0 or #rows, changed
    end))
    if units then products.restocked(units) end
    return n
end

local function exiting()
    local f = host.exiting
    return f ~= nil and f() or false
end

-- lifecycle.run_once() -> orders moved: every step, bounded batches (also for tests and the CLI).
function _M.run_once()
    local size = app_conf("lifecycle_batch", 100)
    local max_batches = app_conf("lifecycle_max_batches", 10)
    local moved = 0
    for i = 1, #STEPS do
        for _ = 1, max_batches do
            if exiting() then return moved end
            local n = batch(STEPS[i], size)
            moved = moved + n
            if n < size then break end
        end
    end
    return moved
end

local function tick(premature)
    if premature or exiting() then return end
    local ok, err = pcall(_M.run_once)
    if not ok then host.log("warn", "order lifecycle: ", tostring(web.is_fail(err) and err.code or err)) end
    ok, err = pcall(idempotency.sweep)
    if not ok then host.log("warn", "idempotency sweep: ", tostring(err)) end
    host.timer.at(app_conf("lifecycle_interval", 1), tick)
end

-- lifecycle.start(): for app:init_worker; the runner of this node is worker 0. Without
-- app.lifecycle_interval in the config there is no scheduler (and no permanent timer).
function _M.start()
    if tonumber(host.worker_id) ~= 0 or app_conf("lifecycle_interval", nil) == nil then return end
    host.timer.at(0, tick)
end

return _M
