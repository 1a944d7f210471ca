-- flash/events.lua: the order event pipeline of the flash purchase -- the events the scripts append
-- to each product's Stream ({p:P}:ev: HELD, EXPIRED, CANCELLED, FAILED, PAID) reach MySQL's
-- flash_orders through the consumer group "mysql", drained by every worker of every node (consumer
-- name: host.node_id .. "/" .. worker id).
--
-- Each run reads at most app.flash_events_batch events per product (XREADGROUP ... COUNT) and at
-- most app.flash_events_max_batches batches: a backlog is worked off over the following runs,
-- nothing is dropped (the Stream is never trimmed below an unacknowledged event). A batch is one
-- MySQL transaction; its events are acknowledged (XACK) only after the commit, so a crash between
-- the two replays them -- harmless, since the write is idempotent by order id and a state only moves
-- forward (HELD -> PAID | EXPIRED | CANCELLED | FAILED; a final state never changes). Events a dead
-- consumer read but never acknowledged are taken over after app.flash_events_claim_idle seconds
-- (XAUTOCLAIM); a worker that comes back under the same consumer name (the master restarts a killed
-- worker with its id) first takes back what its predecessor read and never acknowledged (XREADGROUP
-- from id 0: its own pending entries), at once rather than after the idle time. The backlog (the
-- group's lag, summed over live products) is the gauge flash_events_lag, set by worker 0 of each
-- node, which also trims each Stream below its oldest unacknowledged event.
local web = require "lib.web"
local fields = require "lib.fields"
local host = require "host"

local tonumber, tostring, type, concat = tonumber, tostring, type, table.concat
local floor, unpack, match = math.floor, unpack, string.match
local check = web.check

local _M = {}

local GROUP = "mysql"
local FINAL = "'PAID', 'EXPIRED', 'CANCELLED', 'FAILED'"

local lag_gauge = host.metrics and host.metrics.gauge("flash_events_lag",
    "Flash order events not yet in MySQL (worker 0 of each node reports its node's view).")

local app_conf = fields.app_conf

local function consumer()
    return tostring(host.node_id or "node") .. "/" .. tostring(host.worker_id)
end

local groups = {} -- stream key -> true once the group is known to exist
local resumed = {} -- stream key -> true once this worker has taken back its own pending entries

local function ensure_group(key)
    if groups[key] then return end
    local ok, err = host.redis.call("XGROUP", "CREATE", key, GROUP, "0", "MKSTREAM")
    if not ok and not tostring(err):find("BUSYGROUP", 1, true) then check(ok, err) end
    groups[key] = true
end

-- entries of product pid: {{id, {event, "order id|user id"}}, ...} (redis/flash.lua; the event's time
-- is its id's, milliseconds of the Redis clock) -> the ids written.
local function apply(pid, entries)
    local values, args, ids = {}, {}, {}
    for i = 1, #entries do
        local e = entries[i]
        ids[i] = e[1]
        local kv = e[2]
        local oid, uid = match(type(kv) == "table" and type(kv[2]) == "string" and kv[2] or "", "^(%d+)|(%d+)$")
        if oid then
            values[#values + 1] = "(?, ?, ?, ?, FROM_UNIXTIME(? / 1000), FROM_UNIXTIME(? / 1000))"
            local n, at = #args, tonumber(match(e[1], "^%d+"))
            args[n + 1], args[n + 2], args[n + 3], args[n + 4] = tonumber(oid), pid, tonumber(uid), kv[1]
            args[n + 5], args[n + 6] = at, at
        end
    end
    if #values > 0 then
        check(host.mysql.tx(function(tx)
            check(tx:query("INSERT INTO flash_orders (id, product_id, user_id, state, created_at, updated_at) VALUES "
                .. concat(values, ", ") .. " ON DUPLICATE KEY UPDATE "
                .. "updated_at = IF(state = 'HELD' AND VALUES(state) IN (" .. FINAL .. "), VALUES(updated_at), "
                .. "updated_at), state = IF(state = 'HELD' AND VALUES(state) IN (" .. FINAL .. "), VALUES(state), "
                .. "state)", unpack(args)))
            return true
        end))
    end
    return ids
end

local function ack(key, ids)
    if #ids == 0 then return end
    check(host.redis.call("XACK", key, GROUP, unpack(ids)))
end

-- One product: claim idle entries of dead consumers, then read new ones, in bounded batches.
-- -> events written
local function drain(pid, claim)
    local key = "{p:" .. pid .. "}:ev"
    ensure_group(key)
    local batch = app_conf("flash_events_batch", 100)
    local n = 0
    if claim then
        local idle = floor(app_conf("flash_events_claim_idle", 30) * 1000)
        local r = check(host.redis.call("XAUTOCLAIM", key, GROUP, consumer(), idle, "0-0", "COUNT", batch))
        local entries = type(r) == "table" and r[2] or {}
        if type(entries) == "table" and #entries > 0 then
            ack(key, apply(pid, entries))
            n = n + #entries
        end
    end
    -- this consumer's own pending entries first (from id 0), until there are none; then new ones (">")
    local from = resumed[key] and ">" or "0"
    for _ = 1, app_conf("flash_events_max_batches", 10) do
        local r = check(host.redis.call("XREADGROUP", "GROUP", GROUP, consumer(), "COUNT", batch, "STREAMS", key, from))
        local entries = type(r) == "table" and r[1] and r[1][2]
        if type(entries) ~= "table" or #entries == 0 then
            if from == ">" then break end
            resumed[key], from = true, ">"
        else
            ack(key, apply(pid, entries))
            n = n + #entries
            if #entries < batch and from == ">" then break end
        end
    end
    return n
end

-- The product's backlog (events not yet read + read but not acknowledged); the Stream is trimmed
-- below its oldest unacknowledged event (or the last one delivered): only written events go.
local function lag_and_trim(pid)
    local key = "{p:" .. pid .. "}:ev"
    local r = host.redis.call("XINFO", "GROUPS", key)
    if type(r) ~= "table" then return 0 end
    for i = 1, #r do
        local g = r[i]
        local f = {}
        for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
        if f.name == GROUP then
            local floor_id = f["last-delivered-id"]
            local p = host.redis.call("XPENDING", key, GROUP)
            if type(p) == "table" and tonumber(p[1]) and tonumber(p[1]) > 0 then floor_id = p[2] end
            if type(floor_id) == "string" and floor_id ~= "0-0" then
                host.redis.call("XTRIM", key, "MINID", floor_id)
            end
            return (tonumber(f.lag) or 0) + (tonumber(f.pending) or 0)
        end
    end
    return 0
end

local last_claim = 0

-- events.run_once(ids) -> events written (ids: the live FLASH product ids).
function _M.run_once(ids)
    local now = host.now()
    local claim = now - last_claim >= 5
    if claim then last_claim = now end
    local n = 0
    for i = 1, #ids do n = n + drain(ids[i], claim) end
    if lag_gauge and tonumber(host.worker_id) == 0 then
        local total = 0
        for i = 1, #ids do total = total + lag_and_trim(ids[i]) end
        lag_gauge:set(total)
    end
    return n
end

_M.consumer = consumer
return _M
