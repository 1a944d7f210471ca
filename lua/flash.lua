-- flash.lua: the flash purchase (API.md "Flash purchase", ARCHITECTURE §6).
--
--   GET  /api/flash/products/:id          {id, name, price, sale_starts_at, sale_ends_at, per_user_limit,
--                                          remaining, state} from the stock gate (no auth)
--   GET  /api/flash/products/:id/events   server-sent events of remaining and state (no auth)
--   POST /api/flash/products/:id/entry    member: hold one unit -> 201 {order_id, status, pay_before}
--   POST /api/flash/orders/:id/pay        owner: charge, record in MySQL -> 200 {order_id, status}
--   POST /api/flash/orders/:id/cancel     owner: give the hold up -> 204
--   POST /api/flash/products/:id/end      admin: end the sale now -> 200 (the product view)
--
-- Redis holds the race (redis/flash.lua: one script per step, each atomic), MySQL the record of
-- paid orders (flash_orders + the ordinary order), the stock gate (host.stock) the
-- node's view of each product: an entry on a product the gate knows sold out is answered without a
-- Redis command. Every script returns the product's remaining and version; the gate keeps the
-- newest. A product's Redis state is created from MySQL on first use (init script).
-- Tables: flash_orders is this module's; the product rows are read through the catalog's Lua API
-- (products.load/lock_stock/end_sale/live_flash_ids) and a paid hold becomes an ordinary order through
-- orders.record.
-- The expiry sweeper (flash.start, every worker) returns overdue holds and refreshes the gate of
-- every live FLASH product, so a reopen missed on this node is seen within app.flash_sweep_interval;
-- the same timer drains the order events into MySQL (flash/events.lua).
local web = require "lib.web"
local json = require "lib.json"
local clock = require "lib.clock"
local auth = require "lib.auth"
local fields = require "lib.fields"
local channel = require "lib.channel"
local scripts = require "redis.flash"
local events = require "flash.events"
local payment = require "payment"
local catalog = require "products"
local orders = require "orders"
local host = require "host"
local gate = host.stock

local type, tonumber, tostring, floor, min, pcall, pairs, setmetatable = type, tonumber, tostring, math.floor,
    math.min, pcall, pairs, setmetatable
local find, format, match = string.find, string.format, string.match
local fail, check = web.fail, web.check
local null = json.null
local epoch_of_sql = clock.epoch_of_sql

local _M = {}

local MSG = {
    NOT_FOUND = { ko = "상품을 찾을 수 없습니다.", en = "The product was not found." },
    ORDER_NOT_FOUND = { ko = "주문을 찾을 수 없습니다.", en = "The order was not found." },
    SALE_NOT_OPEN = { ko = "아직 판매가 시작되지 않았습니다.", en = "The sale has not started yet." },
    SALE_CLOSED = { ko = "판매가 종료되었습니다.", en = "The sale is over." },
    SALE_PAUSED = {
        ko = "판매가 잠시 중단되었습니다. 잠시 후 다시 시도해주세요.",
        en = "The sale is paused for a moment. Please retry shortly.",
    },
    ALREADY_PURCHASED = { ko = "이미 구매한 상품입니다.", en = "You have already bought this product." },
    OUT_OF_STOCK = { ko = "재고가 모두 소진되었습니다.", en = "Sold out." },
    NOT_PAYMENT_PENDING = { ko = "결제 대기 중인 주문이 아닙니다.", en = "The order is not waiting for payment." },
    ALREADY_PAID = { ko = "이미 결제된 주문입니다.", en = "The order is paid already." },
    RESERVATION_EXPIRED = {
        ko = "결제 가능 시간이 지났습니다.",
        en = "The reservation expired before the payment.",
    },
    PAYMENT_FAILED = {
        ko = "결제에 실패했습니다. 다시 시도해주세요.",
        en = "The payment failed. Please try again.",
    },
    REUSED = {
        ko = "같은 Idempotency-Key가 다른 요청에 사용되었습니다.",
        en = "This Idempotency-Key was used for a different request.",
    },
    BAD_KEY = {
        ko = "Idempotency-Key는 1~255자의 인쇄 가능한 ASCII 문자여야 합니다.",
        en = "Idempotency-Key must be 1 to 255 printable ASCII characters.",
    },
}

local STATUS = {
    SALE_NOT_OPEN = 403, SALE_CLOSED = 410, SALE_PAUSED = 503, ALREADY_PURCHASED = 409, OUT_OF_STOCK = 409,
    ORDER_NOT_FOUND = 404, NOT_PAYMENT_PENDING = 409, ALREADY_PAID = 409, RESERVATION_EXPIRED = 410,
    IDEMPOTENCY_KEY_REUSED = 422,
}

local JSON_HEADERS = web.JSON_HEADERS
local LIVE_KEY = "flash:live"
local live_exp -- when this worker's list of live products is read again (the sweeper's section)
local ID_SPAN = 1000000000 -- order id = product id * ID_SPAN + the product's entry sequence

local app_conf = fields.app_conf

local function hold_ms() return floor(app_conf("hold_seconds", 300) * 1000) end
local function settle_ms() return floor(app_conf("flash_settle_seconds", 15) * 1000) end
local function idem_ttl_ms() return floor(app_conf("idempotency_ttl", 86400) * 1000) end

-- The scripts, by name: content-addressed handles, made on first use.
local S = setmetatable({}, { __index = function(t, name)
    local h = host.redis.script(scripts[name])
    t[name] = h
    return h
end })

local function keys_of(pid)
    local t = "{p:" .. pid .. "}"
    return { s = t .. ":s", dl = t .. ":dl", ev = t .. ":ev", tag = t }
end
_M.keys_of = keys_of

-- The KEYS of the entry script for a request without Idempotency-Key, per product (the hot path makes
-- no key strings); bounded like the product cache. Read-only: a request with a key builds its own.
local entry_keys, nentry_keys = {}, 0

local function entry_keys_of(pid)
    local keys = entry_keys[pid]
    if keys then return keys end
    local k = keys_of(pid)
    keys = { k.s, k.dl, k.ev }
    nentry_keys = nentry_keys + 1
    if nentry_keys > 10000 then entry_keys, nentry_keys = {}, 1 end
    entry_keys[pid] = keys
    return keys
end

local function run(script, keys, args)
    return check(script:run(keys, args))
end

-- redis_now_ms() -> the Redis clock now (ms since the epoch), read on this host: host.now() plus
-- the offset between the two clocks, measured by a TIME probe at most once a second per worker
-- (the entry script gets the time from here and makes no TIME call of its own: it is what Redis
-- runs per entry). The offset is taken at its lower bound: Redis read its clock somewhere between
-- the probe's send and its reply, so clock - reply time is never more than the true offset. The
-- estimate is therefore never ahead of Redis -- no host opens a sale early -- and behind it by at
-- most the probe's round trip (a hold's deadline that much shorter); between two probes it moves
-- with this host's clock, so a step of that clock (an NTP step) counts until the next probe, a
-- second later. (The millisecond host.now() truncates is taken off the offset too.)
local clock_offset, clock_next, probing = nil, 0, false

local function redis_now_ms()
    local now = host.now()
    if now >= clock_next and not (probing and clock_offset) then
        probing = true
        local t, err = host.redis.call("TIME")
        probing = false
        check(t, err)
        now = host.now()
        clock_offset, clock_next = tonumber(t[1]) + tonumber(t[2]) / 1e6 - now - 0.001, now + 1
    end
    return floor((now + clock_offset) * 1000)
end

---------------------------------------------------------------------------------------------------
-- Products (MySQL, cached per worker for a second: name, price and the sale window change rarely)

local products, cached = {}, 0 -- pid -> { row = row | false, exp = t }; entries (a scan of ids cannot grow it
                                -- past MAX_CACHED)
local MAX_CACHED = 10000

local function product(pid, fresh)
    local e = products[pid]
    local now = host.now()
    if e and e.exp > now and not fresh then return e.row end
    local row = catalog.load(pid)
    if row and row.type ~= "FLASH" then row = nil end
    if row then
        row.starts = epoch_of_sql(row.sale_starts_at)
        row.ends = epoch_of_sql(row.sale_ends_at)
    end
    if not e then
        cached = cached + 1
        if cached > MAX_CACHED then products, cached = {}, 1 end
    end
    products[pid] = { row = row or false, exp = now + 1 }
    return row
end

local function not_found(pid)
    fail(404, "PRODUCT_NOT_FOUND", MSG.NOT_FOUND, { product_id = pid })
end

local function set_gate(pid, remaining, ver, paused)
    if remaining == nil or ver == nil then return end
    local ok, err = gate.update(pid, remaining, ver, paused == 1 or paused == true)
    if ok == nil then host.log("warn", "flash gate update of ", pid, ": ", tostring(err)) end
end

-- init(pid [, force]) -> remaining, ver: the product's Redis state, created from MySQL when absent
-- (force: rebuilt, after Redis lost data). Raises 404 for a product that is not FLASH.
local function init(pid, force)
    local p = product(pid, force)
    if not p then not_found(pid) end
    local rows = check(host.mysql.query("SELECT id, user_id FROM flash_orders WHERE product_id = ? AND state = 'PAID'",
        pid))
    local seq = check(host.mysql.query("SELECT MAX(id) AS m FROM flash_orders WHERE product_id = ?", pid))[1].m
    seq = seq ~= null and tonumber(seq) - pid * ID_SPAN or 0
    local args = { p.stock, floor(p.starts * 1000), floor(p.ends * 1000), p.per_user_limit, force and 1 or 0, seq }
    for i = 1, #rows do
        args[#args + 1] = format("%d", rows[i].id)
        args[#args + 1] = rows[i].user_id
    end
    local k = keys_of(pid)
    local r = run(S.init, { k.s }, args)
    check(host.redis.call("SADD", LIVE_KEY, pid))
    live_exp = 0
    set_gate(pid, r[1], r[2], r[3])
    return r[1], r[2]
end
_M.init = init

-- init_once(pid): init(pid) for the requests that find no Redis state, once per worker at a time: at
-- the opening of a sale nobody has viewed, thousands of entries find none in the same instant, and
-- each building it would be two MySQL queries and a script apiece (the pool's queue overflows:
-- 503 busy). The others wait for the one in progress (at most about 5 s), then retry.
local building = {} -- pid -> true while this worker builds the product's Redis state

local function init_once(pid)
    if not building[pid] then
        building[pid] = true
        local ok, err = pcall(init, pid)
        building[pid] = nil
        if not ok then error(err, 0) end
        return
    end
    local deadline = host.now() + 5
    while building[pid] and host.now() < deadline do host.sleep(0.005) end
end

---------------------------------------------------------------------------------------------------
-- Idempotency-Key (records in Redis, in the product's slot, written by the script that acts)

local function idem(req, uid, kind, pid)
    local key = host.header(req, "idempotency-key")
    if key == nil then return "", nil end
    if #key < 1 or #key > 255 or find(key, "[^\33-\126]") then
        fail(400, "VALIDATION_FAILED", MSG.BAD_KEY, { ["Idempotency-Key"] = web.localize(req, MSG.BAD_KEY) })
    end
    local hash = host.crypto.sha256(req.method .. " " .. req.path .. "\n" .. (req.body or ""))
    return hash, "{p:" .. pid .. "}:" .. kind .. ":" .. uid .. ":" .. key
end

---------------------------------------------------------------------------------------------------
-- Routes

local function state_of(p, remaining, paused, now)
    if now < p.starts then return "UPCOMING" end
    if now >= p.ends then return "CLOSED" end
    if paused then return "PAUSED" end
    return remaining > 0 and "OPEN" or "SOLD_OUT"
end

local last_read = {} -- pid -> when this worker last read the product's state from Redis

local function view(pid)
    local p = product(pid)
    if not p then not_found(pid) end
    local remaining, _, _, paused, age = gate.get(pid)
    local now = host.now()
    if remaining == nil or (age > 0.1 and now - (last_read[pid] or 0) >= 0.1) then
        last_read[pid] = now
        local k = keys_of(pid)
        local st = check(host.redis.call("HMGET", k.s, "cap", "seq", "ver", "paused", "ended"))
        if st[1] == null or st[1] == nil then
            init_once(pid)
        else
            local seq = tonumber(st[2])
            set_gate(pid, tonumber(st[1]) - seq, tonumber(st[3]) + seq, tonumber(st[4]))
            if st[5] == "1" and now < p.ends then p.ends = now end
        end
        remaining, _, _, paused = gate.get(pid)
    end
    remaining = remaining or 0
    return {
        id = p.id, name = p.name, price = p.price, sale_starts_at = clock.rfc3339(p.starts),
        sale_ends_at = clock.rfc3339(p.ends), per_user_limit = p.per_user_limit,
        remaining = remaining > 0 and remaining or 0, state = state_of(p, remaining, paused, now),
    }
end

local function get_product(req)
    return { json = view(fields.path_id(req, not_found)) }
end

-- GET /api/flash/products/:id/events: server-sent events, a `stock` event {product_id, remaining,
-- state} at once and at every change, read through view() (the gate; Redis at most every 100 ms per
-- worker and product however many clients watch); a comment line every SSE_PING seconds keeps
-- proxies from closing a quiet stream. Ends after CLOSED, at a reload or stop (the browser
-- reconnects after `retry`), when a send fails, or when the client goes away (the host cancels it).
local SSE_POLL, SSE_PING = 0.25, 15

local function stock_events(req)
    local pid = fields.path_id(req, not_found)
    local v = view(pid) -- 404 before the stream opens
    return { stream = function(send)
        local last, quiet = nil, 0
        if not send("retry: 2000\n\n") then return end
        while true do
            local now = v.remaining .. " " .. v.state
            if now ~= last then
                local data = json.encode({ product_id = pid, remaining = v.remaining, state = v.state })
                if not send(web.sse("stock", data)) then return end
                last, quiet = now, 0
            elseif quiet >= SSE_PING then
                if not send(": ping\n\n") then return end
                quiet = 0
            end
            if v.state == "CLOSED" or host.exiting() then return end
            host.sleep(SSE_POLL)
            quiet = quiet + SSE_POLL
            v = view(pid)
        end
    end }
end

local function out_of_stock()
    fail(409, "OUT_OF_STOCK", MSG.OUT_OF_STOCK)
end

local RETRY_HEADERS = { ["Content-Type"] = JSON_HEADERS["Content-Type"], ["Retry-After"] = "1" }

-- answer(status, headers, body) -> the entry's response: one table refilled at every entry, not a
-- new one (a table costs the click some 800 instructions with its collection): the handler returns
-- it at once and web.lua reads it before the request's coroutine can yield; nothing keeps it.
local ANSWER = {}

local function answer(status, headers, body)
    ANSWER.status, ANSWER.headers, ANSWER.body = status, headers, body
    return ANSWER
end

-- refusal(req, code [, details]) -> the error response of an entry refused with code: the bytes
-- web.fail would answer, returned instead of raised (no error unwinding on the refusal paths,
-- which are the busy ones of a sale: the sold-out crowd, repeat clicks).
local function refusal(req, code, details)
    return answer(STATUS[code] or 500, code == "SALE_PAUSED" and RETRY_HEADERS or JSON_HEADERS,
        web.error_body(req, code, MSG[code] or MSG.REUSED, details))
end

-- run_entry(keys, uid, now, deadline, pid [, hash, ttl]) -> the elements of the entry script's answer
-- (redis/flash.lua), as values: no table per entry, neither for the answer nor for ARGV, which is
-- one table refilled at every call. The Redis client reads it before the call yields
-- (host/lapi_redis.c formats the command at once), so an entry waiting for its answer does not see
-- another's arguments; a retry refills it.
local ENTRY_ARGS = {}

local function run_entry(keys, uid, now, dl, pid, hash, ttl)
    local a = ENTRY_ARGS
    a[1], a[2], a[3], a[4], a[5], a[6] = uid, now, dl, pid, hash, ttl
    return check(S.entry:run_values(keys, a))
end

-- the 201 of an entry; the body built as text so an idempotent replay answers the same bytes
local function created(oid, dl)
    return answer(201, JSON_HEADERS, format('{"order_id":%d,"status":"PAYMENT_PENDING","pay_before":"%s"}', oid,
        clock.rfc3339(dl / 1000)))
end

local function entry(req)
    local pid = fields.path_id(req, not_found)
    local uid = req.auth.uid
    local hash, ikey = idem(req, uid, "ik", pid)
    -- the sold-out crowd: answered from the node's gate, no Redis command (a request carrying an
    -- Idempotency-Key goes to Redis: it may be the retry of an entry that won)
    if ikey == nil and gate.sold_out(pid) then return refusal(req, "OUT_OF_STOCK") end
    local keys = entry_keys_of(pid)
    local now = redis_now_ms()
    local dl, ttl = now + hold_ms(), nil -- integers: the Redis client writes their digits
    if ikey ~= nil then
        keys = { keys[1], keys[2], keys[3], ikey }
        ttl = idem_ttl_ms()
    end
    -- a new hold: seq, remaining, version; else "DONE", order id, deadline | "ERR", code, starts ms,
    -- then remaining, version, paused | "NOINIT"
    local k, x, y, remaining, ver, paused = run_entry(keys, uid, now, dl, pid, ikey and hash, ttl)
    if k == "NOINIT" then
        init_once(pid)
        k, x, y, remaining, ver, paused = run_entry(keys, uid, now, dl, pid, ikey and hash, ttl)
        if k == "NOINIT" then return refusal(req, "SALE_PAUSED") end -- the build in progress timed out
    end
    if type(k) == "number" then
        set_gate(pid, x, y, 0)
        return created(pid * ID_SPAN + k, dl)
    end
    set_gate(pid, tonumber(remaining), tonumber(ver), tonumber(paused))
    if k == "ERR" then
        return refusal(req, x, x == "SALE_NOT_OPEN" and { starts_at = clock.rfc3339(y / 1000) } or nil)
    end
    return created(x, y) -- DONE: the replay of a keyed entry that won
end

local function order_of(req)
    local function none() fail(404, "ORDER_NOT_FOUND", MSG.ORDER_NOT_FOUND) end
    local oid = fields.path_id(req, none)
    local pid = floor(oid / ID_SPAN)
    if pid < 1 then none() end
    return oid, pid
end

-- locked(tx, oid, pid, uid) -> the hold's flash_orders row (state, order_id, now), created HELD when
-- the event pipeline has not written it yet, and locked until the transaction ends: the pay's record
-- and the settle of a stuck PAYING hold meet here, and whichever comes second sees what the first did.
local function locked(tx, oid, pid, uid)
    check(tx:query("INSERT INTO flash_orders (id, product_id, user_id, state, created_at, updated_at) "
        .. "VALUES (?, ?, ?, 'HELD', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE id = id",
        oid, pid, uid))
    local row = check(tx:query("SELECT state, order_id, user_id, UTC_TIMESTAMP(3) AS now FROM flash_orders "
        .. "WHERE id = ? FOR UPDATE", oid))[1]
    if row.user_id ~= uid then error("flash order id " .. oid .. " reused for another member", 0) end
    return row
end

-- record(oid, pid, uid, p) -> the MySQL order id: the paid hold as an ordinary order (ORDERED, one
-- item at the sale price) and its flash_orders row, in one transaction; a second call for the same
-- hold finds the row and answers the same order (idempotent by the flash order id). -> false,
-- "sold out" when MySQL already holds as many paid orders as products.stock (the product row is
-- locked for the count, so two pays cannot both take the last unit); false, "void" when the settle
-- gave the hold up first (flash_orders FAILED: the unit went back, the charge is refunded).
local function record(oid, pid, uid, p)
    return check(host.mysql.tx(function(tx)
        local row = locked(tx, oid, pid, uid)
        if row.order_id ~= null then return row.order_id end
        if row.state ~= "HELD" then return false, "void" end
        -- the last line against overselling, whatever Redis lost: paid orders never exceed the units
        local stock = catalog.lock_stock(tx, pid)
        local sold = check(tx:query("SELECT COUNT(*) AS n FROM flash_orders WHERE product_id = ? AND state = 'PAID'",
            pid))[1].n
        if sold >= stock then return false, "sold out" end
        local moid = orders.record(tx, uid, { { product_id = pid, name = p.name, price = p.price, quantity = 1 } },
            p.price, row.now)
        check(tx:query("UPDATE flash_orders SET state = 'PAID', order_id = ?, updated_at = ? WHERE id = ?", moid,
            row.now, oid))
        return moid
    end))
end

-- The commit after a successful charge is retried (the hold stays PAYING, which never expires, until
-- it is recorded); 5 tries over about 3 s, then 503 and the hold stays PAYING until the settle
-- (app.flash_settle_seconds after the pay began) finds its fate in MySQL.
local RECORD_BACKOFF = { 0.1, 0.2, 0.4, 0.8, 1.6 }

local function record_retrying(oid, pid, uid, p)
    local err
    for i = 1, #RECORD_BACKOFF + 1 do
        local ok, moid, why = pcall(record, oid, pid, uid, p)
        if ok then return moid, why end
        err = moid
        host.log("error", "flash order ", oid, " charged but not recorded yet (try ", i, "): ",
            tostring(web.is_fail(err) and err.code or err))
        if i <= #RECORD_BACKOFF then host.sleep(RECORD_BACKOFF[i]) end
    end
    error(err, 0)
end

local function paid(oid, moid)
    return { headers = JSON_HEADERS, body = format('{"order_id":%s,"flash_order_id":%s,"status":"ORDERED"}',
        format("%d", tonumber(moid)), format("%d", oid)) }
end

local function pay(req)
    local oid, pid = order_of(req)
    local uid = req.auth.uid
    local hash, ikey = idem(req, uid, "pk", pid)
    local k = keys_of(pid)
    local r = run(S.pay_begin, { k.s, k.dl, k.ev, ikey or k.s },
        { oid, uid, hash, pid, settle_ms() })
    if r[1] == "DONE" then
        if r[2] == 402 then fail(402, "PAYMENT_FAILED", MSG.PAYMENT_FAILED) end
        return paid(oid, r[3])
    end
    if r[1] == "ERR" then
        if r[2] == "RESERVATION_EXPIRED" then set_gate(pid, r[3], r[4], r[5]) end
        fail(STATUS[r[2]], r[2], MSG[r[2]] or MSG.REUSED)
    end
    local p = product(pid)
    if not p then not_found(pid) end
    local ok = payment.charge(oid, p.price)
    if not ok then
        local f = run(S.pay_failed, { k.s, k.dl, k.ev, ikey or k.s },
            { oid, uid, hash, idem_ttl_ms(), pid })
        set_gate(pid, f[1], f[2], f[3])
        fail(402, "PAYMENT_FAILED", MSG.PAYMENT_FAILED)
    end
    local moid, why = record_retrying(oid, pid, uid, p)
    if why == "void" then
        -- the settle took this hold for a dead pay and gave the unit back: the charge goes back too
        payment.refund(oid, p.price)
        fail(402, "PAYMENT_FAILED", MSG.PAYMENT_FAILED)
    end
    if not moid then
        -- MySQL holds as many paid orders as the product has units: Redis lost a sale it had made
        -- (data loss); nothing is sold twice -- the charge is refunded and the stock rebuilt
        payment.refund(oid, p.price)
        run(S.pay_failed, { k.s, k.dl, k.ev, k.s }, { oid, uid, "", 0, pid })
        init(pid, true)
        out_of_stock()
    end
    if run(S.pay_done, { k.s, k.dl, k.ev, ikey or k.s }, { oid, uid, moid, hash, idem_ttl_ms() })
        ~= 1 then
        init(pid, true) -- the hold vanished from Redis (data loss): recount from MySQL
    end
    return paid(oid, moid)
end

local NO_CONTENT = { status = 204 }

local function cancel(req)
    local oid, pid = order_of(req)
    local k = keys_of(pid)
    local r = run(S.cancel, { k.s, k.dl, k.ev }, { oid, req.auth.uid, pid })
    if r[1] == "ERR" then fail(STATUS[r[2]], r[2], MSG[r[2]]) end
    if r[1] == "OK" then set_gate(pid, r[2], r[3], r[4]) end
    return NO_CONTENT
end

local function end_sale(req)
    local pid = fields.path_id(req, not_found)
    if not product(pid, true) then not_found(pid) end
    catalog.end_sale(pid)
    local k = keys_of(pid)
    local r = run(S.set_flag, { k.s }, { "ended", 1 })
    if r[1] == nil then
        init(pid)
        r = run(S.set_flag, { k.s }, { "ended", 1 })
    end
    set_gate(pid, r[1], r[2], r[3])
    product(pid, true)
    return { json = view(pid) }
end

-- flash.units_back(units): after a commit that changed products.stock ({[product id] = units}, units
-- may be negative: a paid order cancelled or returned, an admin stock change), the same units in
-- Redis, so they are on sale again at once and the gates reopen. For a product with no Redis state
-- (NORMAL, or a sale not yet touched) nothing is done: its state, when made, reads MySQL. A failure
-- (Redis down or slow: the script may have run or not) is not retried as such -- a second restock
-- could count the units twice -- but owed: this worker's sweeper rebuilds the product's state from
-- MySQL, the record, once Redis answers (rebuild_due), which is exact whether the restock ran or not.
local owed = {} -- pid -> true: units this worker could not tell Redis about

function _M.units_back(units)
    for pid, n in pairs(units) do
        local k = keys_of(pid)
        local ok, r = pcall(run, S.restock, { k.s }, { n, pid })
        if not ok then
            owed[pid] = true
            host.log("warn", "flash: ", n, " unit(s) of product ", pid, " not put back on sale yet (rebuild owed): ",
                tostring(web.is_fail(r) and r.code or r))
        elseif r[1] then
            set_gate(pid, r[1], r[2], r[3])
        end
    end
end

-- flash.sale_changed(pid): after an admin changed a FLASH product's sale window or per-user limit in
-- MySQL, the same in its Redis state (if it has one), which the entry script decides on.
function _M.sale_changed(pid)
    local p = product(pid, true)
    if not p then return end
    local k = keys_of(pid)
    local r = run(S.set_sale, { k.s }, { floor(p.starts * 1000), floor(p.ends * 1000), p.per_user_limit })
    if r[1] then set_gate(pid, r[1], r[2], r[3]) end
end

---------------------------------------------------------------------------------------------------
-- The expiry sweeper (every worker; the script makes each expiry happen once)

-- Rebuilds from MySQL that are due: a product paused after Redis lost data (recover; the flag lives in
-- Redis, so the sweeper of every worker of every host sees it, whoever paused it and whether or not
-- that worker still lives) and a product whose units this worker owes Redis (units_back). One
-- builder at a time per product (a lock in the product's slot; init is idempotent, so a lock that
-- expired under a slow builder costs a second rebuild, not a wrong count); a failure (MySQL down or
-- slow, Redis gone again) is tried again by the next sweeps, every sweep interval at first, doubling
-- up to REBUILD_MAX_WAIT, until it works -- no manual step.
local REBUILD_LOCK_MS, REBUILD_MAX_WAIT, REBUILD_WAIT = 10000, 5, 5
local retry = {} -- pid -> { at = when this worker tries again, wait = s }

-- rebuild(pid [, wait]) -> true (rebuilt, or nothing to rebuild: not a FLASH product, no Redis state)
-- | false (another builder holds the lock, for wait s at most); raises when MySQL or Redis fails.
local function rebuild(pid, wait)
    local k = keys_of(pid)
    local lock = k.tag .. ":rb"
    local deadline = host.now() + (wait or 0)
    while check(host.redis.call("SET", lock, tostring(host.pid), "NX", "PX", REBUILD_LOCK_MS)) == null do
        if host.now() >= deadline then return false end
        host.sleep(0.02)
    end
    local ok, err = pcall(function()
        if check(host.redis.call("EXISTS", k.s)) == 0 or not product(pid, true) then return end
        init(pid, true)
    end)
    pcall(host.redis.call, "DEL", lock)
    if not ok then error(err, 0) end
    return true
end

local function rebuild_due(pid, now)
    local t = retry[pid]
    if t and now < t.at then return end
    local ok, done = pcall(rebuild, pid)
    if ok and done then
        retry[pid], owed[pid] = nil, nil
        return
    end
    local wait = t and min(t.wait * 2, REBUILD_MAX_WAIT) or app_conf("flash_sweep_interval", 0.5)
    retry[pid] = { at = now + wait, wait = wait }
    if not ok then
        host.log("warn", "flash: rebuild of product ", pid, " failed, next try in ", wait, " s: ",
            tostring(web.is_fail(done) and done.code or done))
    end
end

-- The live products (a Redis set, LIVE_KEY: every product whose state init created, until a day
-- after its sale ended), read at most once a second per worker. No MySQL: the timers cost Redis only.
local live = {}
live_exp = 0

local function live_products()
    local now = host.now()
    if now < live_exp then return live end
    local ids = check(host.redis.call("SMEMBERS", LIVE_KEY))
    live = {}
    for i = 1, #ids do live[i] = tonumber(ids[i]) end
    live_exp = now + 1
    return live
end

-- settle(pid, oid, uid) -> "PAID" | "FAILED": the fate of a hold whose pay began
-- app.flash_settle_seconds ago and never finished (its worker was killed mid-pay, or its record
-- ran out of retries). MySQL decides, under the row lock the pay's record takes too: a hold recorded
-- there is marked paid in Redis; any other is marked FAILED in MySQL first (a record coming later
-- finds it and answers 402), then its charge is refunded (payment.refund is idempotent by order
-- id: a gateway refunds an order at most once and never one it did not charge) and its unit goes
-- back. Several workers may settle one hold: the scripts act only on a PAYING hold.
local function settle(pid, oid, uid)
    local moid = check(host.mysql.tx(function(tx)
        local row = locked(tx, oid, pid, uid)
        if row.order_id ~= null then return row.order_id end
        check(tx:query("UPDATE flash_orders SET state = 'FAILED', updated_at = ? WHERE id = ? AND state = 'HELD'",
            row.now, oid))
        return false
    end))
    local k = keys_of(pid)
    if moid then
        run(S.pay_done, { k.s, k.dl, k.ev, k.s }, { oid, uid, moid, "", 0 })
        return "PAID"
    end
    local p = product(pid)
    payment.refund(oid, p and p.price or 0)
    local f = run(S.pay_failed, { k.s, k.dl, k.ev, k.s }, { oid, uid, "", 0, pid })
    set_gate(pid, f[1], f[2], f[3])
    return "FAILED"
end

-- flash.sweep_once() -> holds expired by this call, holds settled by this call.
function _M.sweep_once()
    local n, settled = 0, 0
    for pid in pairs(owed) do rebuild_due(pid, host.now()) end
    local ids = live_products()
    for i = 1, #ids do
        local pid = ids[i]
        local k = keys_of(pid)
        local r = run(S.sweep, { k.s, k.dl, k.ev }, { 200, pid, settle_ms() })
        if r[1] then
            n = n + r[1]
            set_gate(pid, r[2], r[3], r[4])
            if r[4] == 1 then
                rebuild_due(pid, host.now())
            elseif not owed[pid] then
                retry[pid] = nil -- rebuilt (here or elsewhere): a later pause starts its backoff afresh
            end
            local stuck = r[7]
            for j = 1, #stuck, 2 do
                local oid = tonumber(stuck[j])
                local ok, how = pcall(settle, pid, oid, tonumber(stuck[j + 1]))
                if ok then settled = settled + 1 end
                host.log("warn", "flash order ", oid, ": pay unfinished past its settle time; settled: ",
                    ok and how or tostring(web.is_fail(how) and how.code or how))
            end
            if r[5] + 86400000 < host.now() * 1000 and r[6] == 0 then check(host.redis.call("SREM", LIVE_KEY, pid)) end
        end
    end
    return n, settled
end

local exiting = host.exiting

local function tick(premature)
    if premature or exiting() then return end
    local ok, err = pcall(_M.sweep_once)
    if not ok then host.log("warn", "flash sweep: ", tostring(web.is_fail(err) and err.code or err)) end
    ok, err = pcall(function() return events.run_once(live_products()) end)
    if not ok then host.log("warn", "flash events: ", tostring(web.is_fail(err) and err.code or err)) end
    host.timer.at(app_conf("flash_sweep_interval"), tick)
end

---------------------------------------------------------------------------------------------------
-- Cross-host reopen and Redis data loss (worker 0 of each node)

-- A unit coming back anywhere is published on CHANNEL as "pid|remaining|ver|paused" (redis/flash.lua);
-- the subscriber feeds it into this node's gate. A lost message costs at most one sweep interval:
-- the sweeper refreshes the gate of every live product from Redis.
local CHANNEL = "flash:stock"

local function on_message(payload)
    local pid, r, ver, paused = match(payload, "^(%d+)|(-?%d+)|(%d+)|(%d)$")
    if pid then set_gate(tonumber(pid), tonumber(r), tonumber(ver), tonumber(paused)) end
end

-- flash.recover(run_id): after Redis lost data (run_id: the id it came back with) -- every live
-- product paused (Redis flag and gate), then its state rebuilt from MySQL (initial - paid - holds
-- Redis still has) and resumed. The products Redis lists as live are paused first, with no MySQL (an
-- entry must not hold a unit of a stale count while MySQL is away), then those MySQL lists (raises
-- when MySQL fails: the watcher calls again). A product is paused once per run id, whichever node
-- notices first (pause_lost): a node noticing later, or calling again, leaves alone a sale another
-- already rebuilt, which read MySQL after the loss and is exact -- pausing it again would stop the
-- sale for nothing, and at every retry of a node whose MySQL stays away. It rebuilds the products
-- still paused; a rebuild that fails is left to the sweepers (the paused flag says it is due). A live
-- product whose state Redis lost entirely is created again from MySQL at once: the node's gate may
-- still say sold out, and would answer the crowd with no Redis command (so no entry would find the
-- state missing) while the units of the holds Redis lost wait unsold; one that fails raises after
-- the others (the watcher calls again). -> products rebuilt or created
function _M.recover(lost)
    local owed_rebuild, absent, seen = {}, {}, {}
    local function pause(ids, from_mysql)
        for i = 1, #ids do
            local pid = tonumber(ids[i])
            if not seen[pid] then
                local r = run(S.pause_lost, { keys_of(pid).s }, { lost })
                if r[1] then
                    seen[pid] = true
                    set_gate(pid, r[1], r[2], r[3])
                    check(host.redis.call("SADD", LIVE_KEY, pid))
                    if r[3] == 1 then owed_rebuild[#owed_rebuild + 1] = pid end
                elseif from_mysql then
                    seen[pid] = true
                    absent[#absent + 1] = pid
                end
            end
        end
    end
    pause(check(host.redis.call("SMEMBERS", LIVE_KEY)), false)
    pause(catalog.live_flash_ids(), true)
    live_exp = 0
    local n, failed = 0, nil
    for i = 1, #owed_rebuild do
        -- another builder (a sweeper, another node's recover) may be at it: its rebuild began after
        -- the pause or ends it, so waiting for it keeps the pause short
        local ok, done = pcall(rebuild, owed_rebuild[i], REBUILD_WAIT)
        if ok and done then n = n + 1 end
        if not ok then
            host.log("warn", "flash: rebuild of product ", owed_rebuild[i], " failed, left to the sweeper: ",
                tostring(web.is_fail(done) and done.code or done))
        end
    end
    for i = 1, #absent do
        local pid = absent[i]
        -- init creates it when still absent (another node may have just done so: then it reads it),
        -- and the mark says this loss is dealt with (a node noticing later does not pause it)
        local ok, err = pcall(function()
            init(pid)
            check(host.redis.call("HSET", keys_of(pid).s, "lost", lost))
        end)
        if ok then n = n + 1 else failed = web.is_fail(err) and err.code or err end
    end
    if failed then error("state of a live product not created again: " .. tostring(failed), 0) end
    return n
end

local run_id -- the Redis run id this node last saw
local warned_for -- the new run id this node logged

-- A new run id means a restarted (or failed-over) Redis, which may have lost its last writes. Its
-- recover is called again at every watch until it completes (run_id moves on then).
function _M.watch_redis()
    local info = check(host.redis.call("INFO", "server"))
    local id = match(info, "run_id:(%x+)")
    if not id then return end
    if run_id and id ~= run_id then
        if warned_for ~= id then
            warned_for = id
            host.log("warn", "flash: Redis run id changed (", run_id, " -> ", id, "): pausing and rebuilding stock")
        end
        _M.recover(id)
    end
    run_id = id
end

local function watcher(premature)
    if premature or exiting() then return end
    local ok, err = pcall(_M.watch_redis)
    if not ok then host.log("warn", "flash Redis watch: ", tostring(web.is_fail(err) and err.code or err)) end
    host.timer.at(app_conf("flash_watch_interval", 1), watcher)
end

-- flash.start(): for app:init_worker -- the expiry sweeper on every worker; the stock subscriber
-- and the Redis watch on worker 0. They run when app.flash_sweep_interval is set (etc/fcfs.lua
-- sets it; a node without it sells no flash product).
function _M.start()
    payment.start()
    if not app_conf("flash_sweep_interval") then return end
    host.timer.at(0, tick)
    if tonumber(host.worker_id) == 0 then
        host.timer.at(0, channel.follow(CHANNEL, { label = "flash stock subscriber", on_message = on_message }))
        host.timer.at(0, watcher)
    end
end

function _M.routes(app)
    app:get("/api/flash/products/:id[%d]", get_product)
    app:get("/api/flash/products/:id[%d]/events", stock_events)
    app:post("/api/flash/products/:id[%d]/entry", auth.member(entry))
    app:post("/api/flash/products/:id[%d]/end", auth.admin(end_sale))
    app:post("/api/flash/orders/:id[%d]/pay", auth.member(pay))
    app:post("/api/flash/orders/:id[%d]/cancel", auth.member(cancel))
end

return _M
