-- Black-box specs of the flash purchase (API.md "Flash purchase"): the real binary with 2 workers,
-- a private redis-server, a database of its own; hold_seconds = 2. Every response is checked
-- against docs/openapi.yaml.
--
-- Covered: every error code of the Flash table; entry and pay idempotent under Idempotency-Key; a
-- hold expiring returns its unit; 200 pays racing their holds' expiry (each either paid and in
-- MySQL, or refused with its unit back -- never both, never neither); per_user_limit across
-- workers; 1,000 sold-out entries costing a bounded number of Redis commands; a paid order once in
-- MySQL; stock exact under concurrent repeat clicks; payment failure returning the unit; the order
-- event pipeline into MySQL; reconcile; Redis restarted from an AOF lacking its last writes (no
-- oversell: the stock is rebuilt from MySQL); the settle of pays that never finished (a gateway
-- slower than flash_settle_seconds, a worker killed mid-charge, a commit Redis never heard of);
-- units coming back after the fact (a paid order cancelled, an admin stock or sale window change).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/flash_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local shop = require "spec.support.shop"
local flash = require "spec.support.flash"
local raw = require "spec.support.raw"

local format = string.format

describe("flash purchase", function()
    local env, a, b, admin, failing, slow

    local function call(...) return env:call(...) end

    local f = flash.new(function() return env, admin end)
    local expect_error, product, entry, pay, cancel = f.expect_error, f.product, f.entry, f.pay, f.cancel
    local view, state, count, wait_for = f.view, f.state, f.count, f.wait_for

    -- RFC 3339 in the business time zone, s seconds from now
    local at = shop.at

    -- a server whose gateway is slower than the settle: a pay still charging is taken for dead after 1 s
    local function start_slow()
        return env:start({ workers = 1 }, { hold_seconds = 2, flash_sweep_interval = 0.2, flash_settle_seconds = 1,
            payment = { failure_rate = 0, latency = 2 } })
    end

    lazy_setup(function()
        env = shop.setup("fcfs_flash_spec", { workers = 2 }, { hold_seconds = 2, flash_sweep_interval = 0.2,
            payment = { failure_rate = 0 } })
        failing = env:start({ workers = 1 }, { hold_seconds = 2, payment = { failure_rate = 1 } })
        slow = start_slow()
        a, b = env:member("a"), env:member("b")
        admin = env:member("admin", "ADMIN")
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    describe("product view", function()
        it("shows the sale from the gate, without auth; 404 for a NORMAL or unknown product", function()
            local p = product({ stock = 7, sale_starts_at = at(3600), sale_ends_at = at(7200) })
            local v = view(p.id)
            assert.same({ p.id, p.name, 5000, 7, "UPCOMING", 1 },
                { v.id, v.name, v.price, v.remaining, v.state, v.per_user_limit })
            assert.equal(shop.epoch(p.sale_starts_at), shop.epoch(v.sale_starts_at))
            local normal = call("POST", "/api/products", { token = admin.token,
                json = { name = "보통 " .. env.run, price = 10, stock = 1 } })
            expect_error(call("GET", "/api/flash/products/{id}", { path = "/api/flash/products/" .. normal.json.id }),
                404, "PRODUCT_NOT_FOUND")
            expect_error(call("GET", "/api/flash/products/{id}", { path = "/api/flash/products/999999" }), 404,
                "PRODUCT_NOT_FOUND")
            local open = product({ stock = 2 })
            assert.equal("OPEN", view(open.id).state)
        end)
    end)

    describe("entry", function()
        it("answers 401 without a token", function()
            local p = product()
            expect_error(entry(nil, p.id), 401, "UNAUTHORIZED")
        end)

        it("holds one unit: 201 PAYMENT_PENDING with pay_before about hold_seconds ahead", function()
            local p = product({ stock = 3 })
            local t0 = socket.gettime()
            local res = entry(a.token, p.id)
            assert.equal(201, res.status, res.body)
            assert.equal("PAYMENT_PENDING", res.json.status)
            local due = shop.epoch(res.json.pay_before) - t0
            assert.is_true(due > 1 and due < 3, tostring(due))
            local s = state(p.id)
            assert.same({ 3, 2, 1, 0 }, { s.initial, s.remaining, s.held, s.paid })
        end)

        it("refuses outside the sale window: 403 SALE_NOT_OPEN with details.starts_at, 410 SALE_CLOSED", function()
            local p = product({ sale_starts_at = at(3600), sale_ends_at = at(7200) })
            local e = expect_error(entry(a.token, p.id), 403, "SALE_NOT_OPEN")
            assert.equal(shop.epoch(p.sale_starts_at), shop.epoch(e.details.starts_at))
            local q = product()
            local res = call("POST", "/api/flash/products/{id}/end", { path = "/api/flash/products/" .. q.id .. "/end",
                token = admin.token })
            assert.equal(200, res.status, res.body)
            assert.equal("CLOSED", res.json.state)
            expect_error(entry(a.token, q.id), 410, "SALE_CLOSED")
            expect_error(call("POST", "/api/flash/products/{id}/end", { path = "/api/flash/products/" .. q.id .. "/end",
                token = a.token }), 403, "FORBIDDEN")
        end)

        it("answers 409 ALREADY_PURCHASED over per_user_limit and 409 OUT_OF_STOCK when none is left", function()
            local p = product({ stock = 2 })
            assert.equal(201, entry(a.token, p.id).status)
            expect_error(entry(a.token, p.id), 409, "ALREADY_PURCHASED")
            assert.equal(201, entry(b.token, p.id).status)
            expect_error(entry(b.token, p.id), 409, "OUT_OF_STOCK") -- sold out: the gate answers first
            assert.equal(0, state(p.id).remaining)
            assert.equal("SOLD_OUT", view(p.id).state)
        end)

        it("answers 503 SALE_PAUSED while the product's stock is being rebuilt; then the sweeper reopens it",
            function()
            local p = product()
            view(p.id)
            local t = "{p:" .. p.id .. "}"
            env.redis:call("SET", t .. ":rb", "spec", "PX", 10000) -- a rebuild in progress somewhere
            env.redis:call("HSET", t .. ":s", "paused", "1")
            local e = expect_error(entry(a.token, p.id), 503, "SALE_PAUSED")
            assert.is_string(e.message)
            assert.equal(3, state(p.id).remaining)
            env.redis:call("DEL", t .. ":rb") -- that builder died: the sweepers take over
            wait_for("the rebuild", function() return state(p.id).paused == 0 end, 5)
            assert.equal(201, entry(a.token, p.id).status)
        end)

        it("404 PRODUCT_NOT_FOUND for a product that is not FLASH", function()
            expect_error(entry(a.token, 999999), 404, "PRODUCT_NOT_FOUND")
        end)

        it("is idempotent under Idempotency-Key: the same response, one unit; 422 for another body", function()
            local p = product({ stock = 5, per_user_limit = 3 })
            local h = { ["Idempotency-Key"] = "entry-" .. env.run }
            local r1 = entry(a.token, p.id, { headers = h })
            local r2 = entry(a.token, p.id, { headers = h })
            assert.equal(201, r1.status, r1.body)
            assert.equal(r1.status, r2.status)
            assert.equal(r1.body, r2.body)
            assert.equal(4, state(p.id).remaining)
            expect_error(entry(a.token, p.id, { headers = h, body = '{"x":1}' }), 422, "IDEMPOTENCY_KEY_REUSED")
            -- another member's same key is another request
            assert.equal(201, entry(b.token, p.id, { headers = h }).status)
            assert.equal(3, state(p.id).remaining)
        end)
    end)

    describe("pay", function()
        it("pays: 200 ORDERED, the order in MySQL exactly once; then 409 ALREADY_PAID", function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            expect_error(pay(b.token, oid), 404, "ORDER_NOT_FOUND")
            local res = pay(a.token, oid)
            assert.equal(200, res.status, res.body)
            assert.equal("ORDERED", res.json.status)
            assert.equal(oid, res.json.flash_order_id)
            expect_error(pay(a.token, oid), 409, "ALREADY_PAID")
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID' "
                .. "AND order_id = %d", oid, res.json.order_id)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id "
                .. "WHERE i.product_id = %d AND o.user_id = %d AND o.status = 'ORDERED'", p.id, a.id)))
            local o = call("GET", "/api/orders/{id}", { path = "/api/orders/" .. res.json.order_id, token = a.token })
            assert.equal(200, o.status, o.body)
            assert.equal(5000, o.json.total)
            local s = state(p.id)
            assert.same({ 1, 0, 1 }, { s.remaining, s.held, s.paid })
            expect_error(pay(a.token, 12345), 404, "ORDER_NOT_FOUND")
        end)

        it("is idempotent under Idempotency-Key: the same 200, one order; 422 for another body", function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            local h = { ["Idempotency-Key"] = "pay-" .. env.run }
            local r1 = pay(a.token, oid, { headers = h })
            local r2 = pay(a.token, oid, { headers = h })
            assert.equal(200, r1.status, r1.body)
            assert.equal(r1.body, r2.body)
            expect_error(pay(a.token, oid, { headers = h, body = '{"card":2}' }), 422, "IDEMPOTENCY_KEY_REUSED")
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
        end)

        it("402 PAYMENT_FAILED returns the unit; the member may enter again; a retried key answers 402", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            local h = { ["Idempotency-Key"] = "fail-" .. env.run }
            expect_error(pay(a.token, oid, { server = failing, headers = h }), 402, "PAYMENT_FAILED")
            expect_error(pay(a.token, oid, { server = failing, headers = h }), 402, "PAYMENT_FAILED")
            local s = state(p.id)
            assert.same({ 1, 0, 0 }, { s.remaining, s.held, s.paid })
            expect_error(pay(a.token, oid), 409, "NOT_PAYMENT_PENDING")
            -- the other server's gate reopens through the published release (or its next sweep)
            local again = f.entry_when_open(a.token, p.id)
            assert.equal(200, pay(a.token, again.json.order_id).status)
            assert.equal(0, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
        end)

        it("410 RESERVATION_EXPIRED after hold_seconds, nothing charged; the unit is back", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            expect_error(entry(b.token, p.id), 409, "OUT_OF_STOCK")
            socket.sleep(2.2)
            expect_error(pay(a.token, oid), 410, "RESERVATION_EXPIRED")
            assert.equal(1, state(p.id).remaining)
            assert.equal(0, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            -- the gate reopened: b gets the unit
            assert.equal(201, entry(b.token, p.id).status)
        end)
    end)

    describe("settle of a pay that never finished", function()
        it("gives up a pay still charging after flash_settle_seconds: FAILED in MySQL, the unit back once, "
            .. "then the late pay answers 402", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            local res = pay(a.token, oid, { server = slow })
            expect_error(res, 402, "PAYMENT_FAILED")
            local s = state(p.id)
            assert.same({ 1, 0, 0 }, { s.remaining, s.held, s.paid })
            assert.equal("FAILED", env:sql(format("SELECT state FROM flash_orders WHERE id = %d", oid))[1][1])
            assert.equal(0, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d", p.id)))
            local logged = false -- by whichever server's sweeper settled it
            for _, srv in ipairs(env.servers) do
                logged = logged or srv:error_log():find("flash order " .. oid
                    .. ": pay unfinished past its settle time; settled: FAILED", 1, true) ~= nil
            end
            assert.is_true(logged)
            wait_for("the gate to reopen", function() return view(p.id).state == "OPEN" end, 3)
            assert.equal(201, entry(b.token, p.id).status)
        end)

        it("settles a pay whose worker was killed mid-charge: the unit comes back with no manual step", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            -- a server of its own: the kill takes no other test's worker with it (nor, in the coverage
            -- run, the line counts that worker had not written yet)
            local doomed = start_slow()
            local c = assert(socket.connect("127.0.0.1", doomed.port))
            assert(c:send(shop.raw_request("POST", "/api/flash/orders/" .. oid .. "/pay", a.token)))
            wait_for("the pay to begin", function() return env.redis:call("HGET", "{p:" .. p.id .. "}:s",
                tostring(oid)):find("^PAYING") end, 3)
            for _, pid in ipairs(doomed:worker_pids()) do doomed:signal("KILL", pid) end
            c:settimeout(5)
            assert.is_nil((c:receive("*l")))
            c:close()
            wait_for("the settle", function() return state(p.id).remaining == 1 end, 10)
            local s = state(p.id)
            assert.same({ 1, 0, 0 }, { s.remaining, s.held, s.paid })
            assert.equal("FAILED", env:sql(format("SELECT state FROM flash_orders WHERE id = %d", oid))[1][1])
            -- every gate reopens through the published release (or its next sweep)
            f.entry_when_open(b.token, p.id)
        end)

        it("marks paid in Redis a hold MySQL recorded whose pay died before telling Redis", function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, oid).status)
            -- as if the worker died between the commit and pay_done: Redis still says PAYING
            local t = "{p:" .. p.id .. "}"
            local h = env.redis:call("HGET", t .. ":s", tostring(oid))
            local uid, dl = h:match("^PAID|(%d+)|(%d+)|%d+$")
            assert.truthy(uid)
            env.redis:call("HSET", t .. ":s", tostring(oid), "PAYING|" .. uid .. "|" .. dl .. "|")
            env.redis:call("HINCRBY", t .. ":s", "out", -1) -- held = seq - out
            env.redis:call("HINCRBY", t .. ":s", "paid", -1)
            env.redis:call("ZADD", t .. ":dl", 0, tostring(oid))
            wait_for("the settle", function() return state(p.id).paid == 1 end, 5)
            local s = state(p.id)
            assert.same({ 1, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.truthy(env.redis:call("HGET", t .. ":s", tostring(oid)):find("^PAID|"))
            assert.equal(0, tonumber(env.redis:call("ZCARD", t .. ":dl")))
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
        end)
    end)

    describe("units coming back after the fact", function()
        it("puts the unit of a paid flash order cancelled through the Orders routes back on sale at once", function()
            local p = product({ stock = 1 })
            local paid = pay(a.token, entry(a.token, p.id).json.order_id)
            assert.equal(200, paid.status, paid.body)
            expect_error(entry(b.token, p.id), 409, "OUT_OF_STOCK")
            local res = call("POST", "/api/orders/{id}/cancel", { path = "/api/orders/" .. paid.json.order_id
                .. "/cancel", token = a.token })
            assert.equal(200, res.status, res.body)
            local s = state(p.id)
            assert.same({ 2, 1, 0, 1 }, { s.initial, s.remaining, s.held, s.paid })
            f.entry_when_open(b.token, p.id)
            local code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", tostring(p.id) }
            assert.equal(0, code, out)
            assert.matches("initial 2, remaining 0, held 1, paid 1", out, 1, true)
        end)

        it("takes an admin's stock change and sale window change into the sale's Redis state", function()
            local p = product({ stock = 1, sale_starts_at = at(3000), sale_ends_at = at(3600) })
            assert.equal("UPCOMING", view(p.id).state) -- the Redis state exists from here on
            local res = call("PUT", "/api/products/{id}/stock", { path = "/api/products/" .. p.id .. "/stock",
                token = admin.token, json = { quantity = 4 } })
            assert.equal(200, res.status, res.body)
            local s = state(p.id)
            assert.same({ 4, 4 }, { s.initial, s.remaining })
            expect_error(entry(a.token, p.id), 403, "SALE_NOT_OPEN")
            res = call("PATCH", "/api/products/{id}", { path = "/api/products/" .. p.id, token = admin.token,
                json = { sale_starts_at = at(-1), per_user_limit = 2 } })
            assert.equal(200, res.status, res.body)
            assert.equal(201, entry(a.token, p.id).status)
            assert.equal(201, entry(a.token, p.id).status)
            expect_error(entry(a.token, p.id), 409, "ALREADY_PURCHASED")
            assert.equal(2, state(p.id).remaining)
        end)
    end)

    describe("cancel", function()
        it("204 and the unit back; 409 once paying or paid; 404 for another member", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            expect_error(cancel(b.token, oid), 404, "ORDER_NOT_FOUND")
            assert.equal(204, cancel(a.token, oid).status)
            assert.equal(204, cancel(a.token, oid).status)
            assert.equal(1, state(p.id).remaining)
            expect_error(pay(a.token, oid), 409, "NOT_PAYMENT_PENDING")
            local o2 = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, o2).status)
            expect_error(cancel(a.token, o2), 409, "ALREADY_PAID")
        end)
    end)

    describe("hold expiry", function()
        it("returns the unit of an unpaid hold, once (the sweeper of every worker runs)", function()
            local p = product({ stock = 2, per_user_limit = 2 })
            assert.equal(201, entry(a.token, p.id).status)
            assert.equal(201, entry(a.token, p.id).status)
            expect_error(entry(b.token, p.id), 409, "OUT_OF_STOCK")
            wait_for("the holds to expire", function() return state(p.id).remaining == 2 end, 6)
            socket.sleep(0.5)
            local s = state(p.id)
            assert.same({ 2, 0, 0 }, { s.remaining, s.held, s.paid })
            assert.equal(0, tonumber(env.redis:call("HEXISTS", "{p:" .. p.id .. "}:s", "u" .. a.id)))
            wait_for("the gate to reopen", function() return view(p.id).state == "OPEN" end, 3)
            assert.equal(201, entry(b.token, p.id).status)
        end)

        it("races 200 pays against their holds' expiry: each paid or refused, never both, never neither", function()
            local n = 200
            local p = product({ stock = n, per_user_limit = 1000 })
            local reqs = {}
            for i = 1, n do reqs[i] = shop.raw_request("POST", "/api/flash/products/" .. p.id .. "/entry", a.token) end
            local entries = raw.fanout { port = env.s.port, n = n, requests = reqs, timeout = 20 }
            local oids, due = {}, {}
            for i, r in ipairs(entries) do
                assert.equal(201, r.status, tostring(r.err or r.body))
                local j = cjson.decode(r.body)
                oids[i] = j.order_id
                due[#due + 1] = shop.epoch(j.pay_before)
            end
            table.sort(due)
            local fire = due[math.floor(n / 2)] - 0.03
            socket.sleep(math.max(0, fire - socket.gettime()))
            for i = 1, n do reqs[i] = shop.raw_request("POST", "/api/flash/orders/" .. oids[i] .. "/pay", a.token) end
            local pays = raw.fanout { port = env.s.port, n = n, requests = reqs, timeout = 30 }
            local paid, refused = 0, 0
            for i, r in ipairs(pays) do
                local in_mysql = count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'",
                    oids[i]))
                if r.status == 200 then
                    paid = paid + 1
                    assert.equal(1, in_mysql)
                else
                    assert.equal(410, r.status, tostring(r.err or r.body))
                    refused = refused + 1
                    assert.equal(0, in_mysql)
                end
            end
            assert.equal(n, paid + refused)
            wait_for("no hold left", function() return state(p.id).held == 0 end, 6)
            local s = state(p.id)
            assert.same({ n, refused, 0, paid }, { s.initial, s.remaining, s.held, s.paid })
            assert.equal(paid, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            print(format("# race: %d paid, %d refused", paid, refused))
        end)
    end)

    describe("under concurrency (2 workers)", function()
        it("keeps per_user_limit across workers: 30 simultaneous entries of one member -> one hold", function()
            local p = product({ stock = 10, per_user_limit = 1 })
            local req = shop.raw_request("POST", "/api/flash/products/" .. p.id .. "/entry", b.token)
            local results = raw.fanout { port = env.s.port, n = 30, request = req, timeout = 20 }
            local won = 0
            for _, r in ipairs(results) do
                if r.status == 201 then
                    won = won + 1
                else
                    assert.equal(409, r.status, tostring(r.err or r.body))
                    assert.equal("ALREADY_PURCHASED", cjson.decode(r.body).error.code)
                end
            end
            assert.equal(1, won)
            assert.equal(9, state(p.id).remaining)
        end)

        it("builds a never-viewed product's Redis state once per worker when 100 entries open it at once",
            function()
            -- a node whose MySQL queue holds 4 waiting queries: 100 entries each building the state
            -- (two queries apiece) overflowed it and answered 503 busy
            local narrow = env:start({ workers = 1, mysql_pool_size = 1, mysql_queue_size = 4 },
                { hold_seconds = 60, flash_sweep_interval = 0.2 })
            local p = product({ stock = 100, per_user_limit = 100 })
            local req = shop.raw_request("POST", "/api/flash/products/" .. p.id .. "/entry", a.token)
            local results = raw.fanout { port = narrow.port, n = 100, request = req, timeout = 20 }
            for _, r in ipairs(results) do assert.equal(201, r.status, tostring(r.err or r.body)) end
            local s = state(p.id)
            assert.same({ 0, 100 }, { s.remaining, s.held })
            -- gone before the Redis data-loss spec: its watcher would rebuild every sale through a
            -- one-connection pool
            narrow:stop()
        end)

        it("keeps stock exact under repeat clicks of many members", function()
            local members = { a, b }
            for i = 3, 8 do members[i] = env:member("m" .. i) end
            local p = product({ stock = 5, per_user_limit = 1 })
            local reqs = {}
            for i = 1, 40 do
                reqs[i] = shop.raw_request("POST", "/api/flash/products/" .. p.id .. "/entry",
                    members[(i - 1) % #members + 1].token)
            end
            local results = raw.fanout { port = env.s.port, n = #reqs, requests = reqs, timeout = 20 }
            local won, winners = {}, {}
            for i, r in ipairs(results) do
                if r.status == 201 then
                    local who = (i - 1) % #members + 1
                    assert.is_nil(winners[who], "a member won twice")
                    winners[who] = true
                    won[#won + 1] = { m = members[who], oid = cjson.decode(r.body).order_id }
                else
                    assert.equal(409, r.status, tostring(r.err or r.body))
                end
            end
            assert.equal(5, #won)
            local s = state(p.id)
            assert.same({ 0, 5, 0 }, { s.remaining, s.held, s.paid })
            for _, w in ipairs(won) do assert.equal(200, pay(w.m.token, w.oid).status) end
            s = state(p.id)
            assert.same({ 5, 0, 0, 5 }, { s.initial, s.remaining, s.held, s.paid })
            assert.equal(5, count(format("SELECT COUNT(DISTINCT user_id) FROM flash_orders WHERE product_id = %d "
                .. "AND state = 'PAID'", p.id)))
        end)

        it("answers 1,000 sold-out entries from the gate: a bounded number of Redis commands", function()
            local p = product({ stock = 1 })
            local won = entry(a.token, p.id)
            assert.equal(200, pay(a.token, won.json.order_id).status) -- sold for good (no expiry)
            expect_error(entry(b.token, p.id), 409, "OUT_OF_STOCK")
            expect_error(entry(b.token, p.id, { server = failing }), 409, "OUT_OF_STOCK")
            -- every command Redis runs, through MONITOR; the entry script is the only one given the
            -- product's order counter key (the sweepers are not)
            local unix = require "socket.unix"
            local m = unix()
            m:settimeout(5)
            assert(m:connect(env.redis.sock))
            assert(m:send("MONITOR\r\n"))
            assert.equal("+OK", m:receive("*l"))
            local req = shop.raw_request("POST", "/api/flash/products/" .. p.id .. "/entry", b.token)
            for _ = 1, 10 do
                local results = raw.fanout { port = env.s.port, n = 100, request = req, timeout = 20 }
                for _, r in ipairs(results) do assert.equal(409, r.status, tostring(r.err or r.body)) end
            end
            assert(env.redis:call("SET", "flash-spec-mark", "1"))
            local mark, total, entries = '"flash-spec-mark"', 0, 0
            local sha = env.redis:call("SCRIPT", "LOAD", dofile(env.s.lua_dir .. "/redis/flash.lua").entry)
            local key = '"EVALSHA" "' .. sha .. '"' -- the entry script
            while true do
                local line = assert(m:receive("*l"))
                if line:find(mark, 1, true) then break end
                total = total + 1
                if line:find(key, 1, true) then entries = entries + 1 end
            end
            m:close()
            print(format("# 1000 sold-out entries: %d entry scripts run, %d Redis commands in all (sweepers too)",
                entries, total))
            assert.is_true(entries <= 2, tostring(entries))
        end)
    end)
    describe("reconcile (fcfs run lua/cli/reconcile.lua)", function()
        it("prints initial, remaining, held, paid and exits 0 when they add up, 1 when not", function()
            local p = product({ stock = 3, per_user_limit = 3 })
            local o = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, o).status)
            assert.equal(201, entry(a.token, p.id).status)
            local code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", tostring(p.id) }
            assert.equal(0, code, out)
            assert.matches("initial 3, remaining 1, held 1, paid 1", out, 1, true)
            -- Redis believing in a unit MySQL does not have
            env.redis:call("HINCRBY", "{p:" .. p.id .. "}:s", "cap", 1) -- remaining = cap - seq
            code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", tostring(p.id) }
            assert.equal(1, code, out)
            assert.matches("MISMATCH", out, 1, true)
            env.redis:call("HINCRBY", "{p:" .. p.id .. "}:s", "cap", -1)
            code = env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", "x" }
            assert.equal(2, code)
        end)

        it("exits 2 naming why for a product that is not a flash sale, or has no state in Redis yet", function()
            local function reconcile(id)
                return env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", tostring(id) }
            end
            local normal = call("POST", "/api/products", { token = admin.token, json = { name = "일반 " .. env.run,
                price = 1000, stock = 1 } }).json
            local code, out = reconcile(normal.id)
            assert.equal(2, code, out)
            assert.matches("no FLASH product " .. normal.id, out, 1, true)
            local fresh = product()
            code, out = reconcile(fresh.id)
            assert.equal(2, code, out)
            assert.matches("product " .. fresh.id .. " has no flash state in Redis", out, 1, true)
        end)
    end)

    describe("order event pipeline", function()
        it("brings holds, expiries, cancels and failures into MySQL once; the lag gauge drains", function()
            local p = product({ stock = 5, per_user_limit = 5 })
            local held = entry(a.token, p.id).json.order_id
            local cancelled = entry(a.token, p.id).json.order_id
            assert.equal(204, cancel(a.token, cancelled).status)
            local failed = entry(a.token, p.id).json.order_id
            expect_error(pay(a.token, failed, { server = failing }), 402, "PAYMENT_FAILED")
            local paid = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, paid).status)
            local function state_of(oid)
                local rows = env:sql(format("SELECT state FROM flash_orders WHERE id = %d", oid))
                return rows[1] and rows[1][1]
            end
            wait_for("the events in MySQL", function()
                return state_of(held) == "HELD" and state_of(cancelled) == "CANCELLED" and state_of(failed) == "FAILED"
                    and state_of(paid) == "PAID"
            end, 5)
            wait_for("the expiry in MySQL", function() return state_of(held) == "EXPIRED" end, 6)
            assert.equal(4, count(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d", p.id)))
            local raw_metrics
            wait_for("lag 0", function()
                raw_metrics = assert(env.s:admin { path = "/metrics" }).body
                return raw.metric(raw_metrics, "flash_events_lag") == 0
            end, 5)
            -- written events are trimmed from the Stream (at most the last delivered one stays)
            wait_for("the Stream trimmed", function()
                return tonumber(env.redis:call("XLEN", "{p:" .. p.id .. "}:ev")) <= 1
            end, 5)
        end)

        it("has a worker that starts under a consumer name with unacknowledged events take them back at once",
            function()
            local p = product({ stock = 5 })
            entry(a.token, p.id) -- the product's Redis state, its Stream and the consumer group
            local key = "{p:" .. p.id .. "}:ev"
            wait_for("the consumer group", function()
                local ok, groups = pcall(env.redis.call, env.redis, "XINFO", "GROUPS", key)
                return ok and type(groups) == "table" and #groups > 0
            end, 5)
            -- a worker of node "reborn" read an event and died before its XACK (the read and the
            -- append in one MULTI, so no other consumer gets it first)
            local oid = p.id * 1000000000 + 999
            env.redis:call("MULTI")
            env.redis:call("XADD", key, "*", "HELD", format("%d|%d", oid, a.id))
            env.redis:call("XREADGROUP", "GROUP", "mysql", "reborn/0", "COUNT", "10", "STREAMS", key, ">")
            local r = env.redis:call("EXEC")
            assert.equal(1, #r[2][1][2])
            -- its successor, under the same consumer name: the event is in MySQL at once, not after
            -- flash_events_claim_idle (30 s) when another consumer would claim it
            local reborn = env:start({ workers = 1, node_id = "reborn" },
                { hold_seconds = 2, flash_sweep_interval = 0.2 })
            wait_for("the event in MySQL", function()
                return count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d", oid)) == 1
            end, 5)
            wait_for("nothing pending", function()
                return tonumber(env.redis:call("XPENDING", key, "mysql")[1]) == 0
            end, 5)
            reborn:stop()
        end)
    end)

    describe("when Redis loses its last writes", function()
        it("pauses, rebuilds the stock from MySQL and never oversells; every paid order stays in MySQL", function()
            local p = product({ stock = 4, per_user_limit = 10 })
            local function buy() return f.buy(a.token, p.id) end
            -- "the last second": two more payments the AOF copy lacks
            f.losing_writes(function() assert.equal(200, buy().status) end, function()
                assert.equal(200, buy().status)
                assert.equal(200, buy().status)
            end)
            local s = state(p.id) -- what the copy remembers (3 left), unless the rebuild was quicker
            assert.is_true(s.remaining == 3 or s.remaining == 1, tostring(s.remaining))
            wait_for("the stock rebuilt from MySQL", function() return state(p.id).remaining == 1 end, 10)
            -- sell what is left, and more: only one more unit goes (entries answer SALE_PAUSED until
            -- every gate has seen the rebuild)
            local last = f.entry_when_open(a.token, p.id)
            assert.equal(200, f.pay(a.token, last.json.order_id).status)
            for _ = 1, 3 do
                local res = f.entry(a.token, p.id)
                assert.is_true(res.status == 409 or res.status == 503, res.body)
            end
            assert.equal(4, count(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d AND state = 'PAID'",
                p.id)))
            assert.equal(4, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
        end)
    end)
end)
