-- Black-box specs of the flash purchase's rare error paths: the real binary with 2 workers, a private
-- redis-server and a mariadbd of its own (spec/support/db.lua db.private), which the specs stop,
-- stall (SIGSTOP) and bring back.
--
-- Covered: the rebuild after Redis lost its last writes while MariaDB is down, with the worker that saw
-- the restart killed (the sale pauses, then reopens by itself with the exact stock once MariaDB is back:
-- no oversell, every paid order counted), and with one node cut off from MariaDB (the sale is paused
-- once for the restart, not again by the retries of that node's recover nor by the nodes that notice
-- later, once rebuilt); a Redis that comes back empty (the state created again from MySQL at once,
-- though the gate said sold out: the units of the lost holds sell again); a sale left paused, rebuilt by
-- the sweepers while MariaDB stalls; a rebuild racing a pay (counted once); units coming back (a paid
-- order cancelled, an admin stock change) while Redis is unreachable (put back once, from MySQL, when
-- Redis answers again); a pay whose commit fails after the charge (retried while MariaDB stalls; 503
-- when it stays down, the hold then settled); a pay whose hold vanished from Redis meanwhile (recounted
-- from MySQL); a pay MySQL refuses because Redis lost a sale (refunded, no oversell); the settle of an
-- unfinished pay while MariaDB is stalled or down (the hold stays PAYING and is settled by a later
-- sweep: released once, never both refunded and recorded).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/flash_faults_spec.lua
local socket = require "socket"
local shop = require "spec.support.shop"
local flash = require "spec.support.flash"
local shell = require "spec.support.shell"
local http = require "spec.support.http"

local format = string.format

describe("flash purchase under faults", function()
    local env, a, b, admin, slowpay

    local function call(...) return env:call(...) end
    local f = flash.new(function() return env, admin end)
    local expect_error, product, entry, pay = f.expect_error, f.product, f.entry, f.pay
    local state, count, wait_for = f.state, f.count, f.wait_for

    -- the error logs of every server, one text
    local function logs()
        local t = {}
        for _, srv in ipairs(env.servers) do t[#t + 1] = srv:error_log() end
        return table.concat(t, "\n")
    end

    local function serving()
        local res = http.request { port = env.s.port, path = "/healthz", timeout = 1 }
        return res and res.status == 200
    end

    -- MariaDB running again (started if stopped, continued if stalled) and every worker's pool using
    -- it: a few reads in a row answer 200 (so a spec failing mid-fault leaves none to the next)
    local function mysql_back()
        if not env.mysql.running then env.mysql:start() end
        shell.sh("kill -CONT " .. assert(env.mysql:pid()))
        local ok = 0
        wait_for("MySQL back for the host", function()
            local res = http.request { port = env.s.port, path = "/api/products?limit=1", timeout = 2 }
            ok = (res and res.status == 200) and ok + 1 or 0
            return ok >= 6
        end, 20)
    end

    local function reconcile(pid)
        local code, out = env.s:cli { "run", env.s.lua_dir .. "/cli/reconcile.lua", tostring(pid) }
        assert.equal(0, code, out)
        return out
    end

    lazy_setup(function()
        env = shop.setup("fcfs_flash_faults_spec", { workers = 2, mysql_query_timeout = 1, mysql_connect_timeout = 0.5,
            mysql_breaker_cooldown = 0.5, redis_timeout = 0.5, redis_connect_timeout = 0.5 },
            { hold_seconds = 30, flash_sweep_interval = 0.2, flash_settle_seconds = 1, flash_watch_interval = 0.2,
                payment = { failure_rate = 0 } }, { private_mysql = true })
        -- a gateway taking 1 s: a spec stops MariaDB while a pay is charging
        slowpay = env:start({ workers = 1, mysql_query_timeout = 1, mysql_connect_timeout = 0.5,
            mysql_breaker_cooldown = 0.5 }, { hold_seconds = 30, flash_sweep_interval = 0.2, flash_settle_seconds = 6,
            payment = { failure_rate = 0, latency = 1 } })
        a, b = env:member("a"), env:member("b")
        admin = env:member("admin", "ADMIN")
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    describe("Redis loses its last writes while MariaDB is down", function()
        it("pauses the sale, then reopens it by itself with the exact stock once MariaDB is back, though the "
            .. "worker that saw the restart died", function()
            local p = product({ stock = 4, per_user_limit = 10 })
            local function buy() return f.buy(a.token, p.id) end
            local seen = select(2, logs():gsub("Redis run id changed", ""))
            finally(mysql_back)
            f.losing_writes(function() assert.equal(200, buy().status) end, function()
                assert.equal(200, buy().status) -- two payments the AOF copy lacks
                assert.equal(200, buy().status)
            end, function() env.mysql:stop() end)
            wait_for("the restart noticed", function()
                return select(2, logs():gsub("Redis run id changed", "")) > seen
            end)
            -- what Redis remembers (3 left) is stale and MySQL cannot say better: no entry may hold a unit
            wait_for("the pause", function() return state(p.id).paused == 1 end, 5,
                function() return state(p.id).remaining end)
            assert.equal(3, state(p.id).remaining)
            expect_error(entry(a.token, p.id), 503, "SALE_PAUSED")
            -- the worker that paused it dies; its successor never saw the old run id
            for _, pid in ipairs(env.s:worker_pids()) do env.s:signal("KILL", pid) end
            socket.sleep(0.5)
            env.mysql:start()
            wait_for("the stock rebuilt from MySQL", function()
                local s = state(p.id)
                return s.paused == 0 and s.remaining == 1
            end, 10, function() return require("cjson").encode(state(p.id)) end)
            wait_for("the workers back", serving)
            mysql_back()
            local sold, seen_status = 0, {}
            for _ = 1, 4 do
                local res = buy()
                local err = res.json and res.json.error
                seen_status[#seen_status + 1] = res.status .. (err and " " .. tostring(err.code) or "")
                if res.status == 200 then sold = sold + 1 end
            end
            assert.equal(1, sold, table.concat(seen_status, ", "))
            assert.equal(4, count(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d AND state = 'PAID'",
                p.id)))
            assert.equal(4, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            assert.matches("initial 4, remaining 0, held 0, paid 4", reconcile(p.id), 1, true)
        end)

        it("is paused once for the restart: not again by a node whose MySQL stays away at each retry of its "
            .. "recover, nor by a node noticing late, once another node rebuilt the stock", function()
            -- a node that reaches Redis but no MySQL (nothing listens on port 1), watching Redis often
            local cut = env:start({ workers = 1, mysql_socket = "", mysql_host = "127.0.0.1", mysql_port = 1,
                mysql_connect_timeout = 0.5, mysql_breaker_cooldown = 0.1 },
                { flash_sweep_interval = 0.2, flash_watch_interval = 0.1 })
            finally(function() cut:stop() end)
            local function watch_failures()
                return select(2, cut:error_log():gsub("flash Redis watch: ", ""))
            end
            local p = product({ stock = 4, per_user_limit = 10 })
            local function buy() return f.buy(a.token, p.id) end
            socket.sleep(0.3) -- a few of cut's watches: it knows the run id before the restart
            f.losing_writes(function() assert.equal(200, buy().status) end, function()
                assert.equal(200, buy().status) -- a payment the AOF copy lacks
            end)
            wait_for("cut's recover failing", function() return watch_failures() >= 2 end, 10,
                function() return cut:error_log() end)
            assert.matches("Redis run id changed", cut:error_log(), 1, true)
            wait_for("the stock rebuilt by the other nodes", function()
                local s = state(p.id)
                return s.paused == 0 and s.remaining == 2
            end, 10, function() return require("cjson").encode(state(p.id)) end)
            -- cut retries its recover every 0.1 s meanwhile, and slowpay (1 s) may notice the restart only
            -- now: none of them pauses the sale again
            local failures, pauses = watch_failures(), 0
            local until_ = socket.gettime() + 1.5
            while socket.gettime() < until_ do
                if state(p.id).paused ~= 0 then pauses = pauses + 1 end
                socket.sleep(0.02)
            end
            assert.is_true(watch_failures() >= failures + 3, "cut kept retrying")
            assert.equal(0, pauses)
            assert.equal(1, select(2, cut:error_log():gsub("Redis run id changed", "")))
            assert.equal(200, buy().status)
            assert.equal(200, buy().status)
            expect_error(entry(a.token, p.id), 409, "OUT_OF_STOCK")
        end)
    end)

    describe("Redis comes back empty", function()
        it("sells again the units of the holds it lost, though the node's gate said sold out", function()
            local p = product({ stock = 2, per_user_limit = 10 })
            assert.equal(201, entry(a.token, p.id).status)
            assert.equal(201, entry(b.token, p.id).status)
            -- the gate now answers the crowd with no Redis command
            expect_error(entry(a.token, p.id), 409, "OUT_OF_STOCK")
            local r = env.redis
            r:kill9()
            -- nothing to load: the state of every product is gone, holds and all
            assert(shell.sh(format("rm -rf %s/appendonlydir %s/dump.rdb", r.dir, r.dir)) == 0)
            r:restart()
            wait_for("the state created again from MySQL", function()
                return state(p.id).remaining == 2
            end, 10, function() return require("cjson").encode(state(p.id)) end)
            local res
            wait_for("an entry that wins", function()
                res = entry(admin.token, p.id)
                return res.status == 201
            end, 5, function() return res.body end)
            assert.equal(201, entry(b.token, p.id).status)
            expect_error(entry(a.token, p.id), 409, "OUT_OF_STOCK")
        end)
    end)

    describe("a sale left paused", function()
        it("is rebuilt by the sweepers, retried while MariaDB stalls, with the exact stock", function()
            local p = product({ stock = 3, per_user_limit = 10 })
            assert.equal(200, pay(a.token, entry(a.token, p.id).json.order_id).status)
            local mpid = assert(env.mysql:pid())
            assert(shell.sh("kill -STOP " .. mpid) == 0)
            finally(mysql_back)
            -- as recover leaves it when its rebuild failed: paused, on a count Redis cannot vouch for
            env.redis:call("HSET", "{p:" .. p.id .. "}:s", "paused", 1, "cap", state(p.id).seq + 3) -- remaining 3
            wait_for("a failed rebuild", function()
                return logs():find("rebuild of product " .. p.id .. " failed", 1, true)
            end, 10)
            local s = state(p.id)
            assert.same({ 1, 3 }, { s.paused, s.remaining })
            expect_error(entry(b.token, p.id), 503, "SALE_PAUSED")
            assert(shell.sh("kill -CONT " .. mpid) == 0)
            wait_for("the rebuild", function()
                s = state(p.id)
                return s.paused == 0 and s.remaining == 2
            end, 10, function() return s.paused .. " " .. s.remaining end)
            assert.equal(201, entry(b.token, p.id).status)
            assert.matches("initial 3, remaining 1, held 1, paid 1", reconcile(p.id), 1, true)
        end)
    end)

    describe("a rebuild racing a pay", function()
        it("counts a pay MySQL recorded that Redis still has PAYING once: held, then paid", function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, oid).status)
            -- as between the pay's commit and its pay_done: MySQL has it PAID, Redis PAYING
            local t = "{p:" .. p.id .. "}"
            local uid, dl = env.redis:call("HGET", t .. ":s", tostring(oid)):match("^PAID|(%d+)|(%d+)|%d+$")
            env.redis:call("HSET", t .. ":s", tostring(oid), "PAYING|" .. uid .. "|" .. dl .. "|")
            env.redis:call("HINCRBY", t .. ":s", "out", -1) -- held = seq - out
            env.redis:call("HINCRBY", t .. ":s", "paid", -1)
            env.redis:call("ZADD", t .. ":dl", 9999999999999, tostring(oid)) -- no settle yet
            env.redis:call("HSET", t .. ":s", "paused", 1) -- a rebuild due
            wait_for("the rebuild", function() return state(p.id).paused == 0 end, 5)
            local s = state(p.id)
            assert.same({ 1, 1, 0 }, { s.remaining, s.held, s.paid })
            env.redis:call("ZADD", t .. ":dl", 0, tostring(oid)) -- now the settle tells Redis
            wait_for("the settle", function() return state(p.id).paid == 1 end, 5)
            s = state(p.id)
            assert.same({ 1, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.matches("initial 2, remaining 1, held 0, paid 1", reconcile(p.id), 1, true)
        end)
    end)

    describe("units coming back while Redis is unreachable", function()
        -- Redis keeps its data and its run id (no restart, so no recover): its socket is taken away and
        -- the host's connections to it closed, so every command fails at once and none runs later
        local function unreachable(fn)
            local r = env.redis
            assert(shell.sh(format("mv %s %s.away", r.sock, r.sock)) == 0)
            r:close_conn()
            assert(shell.sh(format("redis-cli -p %d CLIENT KILL TYPE normal >/dev/null", r.port)) == 0)
            local ok, err = pcall(fn)
            assert(shell.sh(format("mv %s.away %s", r.sock, r.sock)) == 0)
            assert(ok, err)
        end

        it("puts the unit of a paid order cancelled meanwhile back on sale once, when Redis answers", function()
            local p = product({ stock = 1 })
            local paid = pay(a.token, entry(a.token, p.id).json.order_id)
            assert.equal(200, paid.status, paid.body)
            unreachable(function()
                local res = call("POST", "/api/orders/{id}/cancel", { path = "/api/orders/" .. paid.json.order_id
                    .. "/cancel", token = a.token })
                assert.equal(200, res.status, res.body) -- MySQL is the record: the cancel holds
                wait_for("the missed unit logged", function()
                    return logs():find("unit(s) of product " .. p.id .. " not put back on sale yet", 1, true)
                end, 5)
            end)
            wait_for("the unit back on sale", function() return state(p.id).remaining == 1 end, 10,
                function() return state(p.id).remaining end)
            socket.sleep(1) -- further sweeps put nothing more back
            local s = state(p.id)
            assert.same({ 2, 1, 0, 1 }, { s.initial, s.remaining, s.held, s.paid })
            f.entry_when_open(b.token, p.id)
            expect_error(entry(admin.token, p.id), 409, "OUT_OF_STOCK")
            assert.matches("initial 2, remaining 0, held 1, paid 1", reconcile(p.id), 1, true)
        end)

        it("takes an admin's stock change made meanwhile into the sale, once", function()
            local p = product({ stock = 1, sale_starts_at = shop.at(3000), sale_ends_at = shop.at(3600) })
            assert.equal("UPCOMING", call("GET", "/api/flash/products/{id}",
                { path = "/api/flash/products/" .. p.id }).json.state) -- the Redis state exists from here on
            unreachable(function()
                local res = call("PUT", "/api/products/{id}/stock", { path = "/api/products/" .. p.id .. "/stock",
                    token = admin.token, json = { quantity = 4 } })
                assert.equal(200, res.status, res.body)
            end)
            wait_for("the new stock in Redis", function() return state(p.id).initial == 4 end, 10)
            socket.sleep(1)
            local s = state(p.id)
            assert.same({ 4, 4, 0, 0 }, { s.initial, s.remaining, s.held, s.paid })
        end)
    end)

    describe("a pay whose record fails after the charge", function()
        -- the pay of oid by member m sent to the slow gateway; -> the connection, once the hold is PAYING
        local function paying(m, pid, oid)
            local c = assert(socket.connect("127.0.0.1", slowpay.port))
            assert(c:send(shop.raw_request("POST", "/api/flash/orders/" .. oid .. "/pay", m.token)))
            wait_for("the pay to begin", function() return env.redis:call("HGET", "{p:" .. pid .. "}:s",
                tostring(oid)):find("^PAYING") end, 5)
            c:settimeout(20)
            return c
        end

        local function status_of(c)
            local line = assert(c:receive("*l"))
            c:close()
            return tonumber(line:match("^HTTP/1%.1 (%d+)"))
        end

        it("retries the commit while MariaDB stalls: 200 once it answers, the order in MySQL once", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            local c = paying(a, p.id, oid)
            local mpid = assert(env.mysql:pid())
            assert(shell.sh("kill -STOP " .. mpid) == 0)
            finally(mysql_back)
            wait_for("a failed commit", function()
                return logs():find("flash order " .. oid .. " charged but not recorded yet (try 2)", 1, true)
            end, 10)
            assert(shell.sh("kill -CONT " .. mpid) == 0)
            assert.equal(200, status_of(c))
            local s = state(p.id)
            assert.same({ 0, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
        end)

        it("answers 503 when MariaDB stays down; the hold stays PAYING, then the settle gives it up once", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            local c = paying(a, p.id, oid)
            finally(mysql_back)
            env.mysql:stop()
            assert.equal(503, status_of(c))
            assert.truthy(env.redis:call("HGET", "{p:" .. p.id .. "}:s", tostring(oid)):find("^PAYING|"))
            local s = state(p.id)
            assert.same({ 0, 1, 0 }, { s.remaining, s.held, s.paid })
            env.mysql:start()
            wait_for("the settle", function() return state(p.id).remaining == 1 end, 15)
            socket.sleep(1)
            s = state(p.id)
            assert.same({ 1, 0, 0 }, { s.remaining, s.held, s.paid })
            assert.equal("FAILED", env:sql(format("SELECT state FROM flash_orders WHERE id = %d", oid))[1][1])
            assert.equal(0, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            expect_error(pay(a.token, oid), 409, "NOT_PAYMENT_PENDING")
            assert.equal(201, entry(b.token, p.id).status)
        end)

        it("recounts from MySQL when the hold being paid vanished from Redis meanwhile: 200, no oversell",
            function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            local c = paying(a, p.id, oid)
            -- Redis loses that entry while the gateway charges (as an AOF lacking its last second would)
            local t = "{p:" .. p.id .. "}"
            env.redis:call("HDEL", t .. ":s", tostring(oid))
            env.redis:call("ZREM", t .. ":dl", tostring(oid))
            env.redis:call("HDEL", t .. ":s", "u" .. a.id)
            local seq = state(p.id).seq -- remaining = cap - seq = 2, held = seq - out = 0
            env.redis:call("HSET", t .. ":s", "cap", seq + 2, "out", seq)
            assert.equal(200, status_of(c))
            local s = state(p.id)
            assert.same({ 1, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
            expect_error(entry(a.token, p.id), 409, "ALREADY_PURCHASED")
            assert.matches("initial 2, remaining 1, held 0, paid 1", reconcile(p.id), 1, true)
        end)

        it("refunds a pay MySQL refuses because Redis lost a sale it had made: 409, no oversell", function()
            local p = product({ stock = 1 })
            local first = entry(a.token, p.id).json.order_id
            assert.equal(200, pay(a.token, first).status)
            -- Redis forgets that sale (as an AOF lacking its last second would): the unit on sale again
            local t = "{p:" .. p.id .. "}"
            env.redis:call("HDEL", t .. ":s", tostring(first))
            env.redis:call("HDEL", t .. ":s", "u" .. a.id)
            env.redis:call("HSET", t .. ":s", "cap", state(p.id).seq + 1, "paid", 0) -- remaining = cap - seq
            local oid
            wait_for("the gate to reopen", function()
                local e = entry(b.token, p.id)
                oid = e.status == 201 and e.json.order_id
                return oid
            end, 3)
            expect_error(pay(b.token, oid), 409, "OUT_OF_STOCK")
            local s = state(p.id) -- rebuilt from MySQL
            assert.same({ 0, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.truthy(env.redis:call("HGET", t .. ":s", tostring(oid)):find("^FAILED|"))
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d AND state = 'PAID'",
                p.id)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            assert.equal(0, count(format("SELECT COUNT(*) FROM orders WHERE user_id = %d", b.id)))
            assert.matches("initial 1, remaining 0, held 0, paid 1", reconcile(p.id), 1, true)
        end)
    end)

    describe("the settle of an unfinished pay while MariaDB fails", function()
        -- as if the pay's worker died after pay_begin: the hold PAYING, its settle time past
        local function stuck(pid, oid)
            local t = "{p:" .. pid .. "}"
            local h = env.redis:call("HGET", t .. ":s", tostring(oid))
            local uid, dl = h:match("^%u+|(%d+)|(%d+)|")
            assert.truthy(uid, h)
            return function()
                env.redis:call("HSET", t .. ":s", tostring(oid), "PAYING|" .. uid .. "|" .. dl .. "|")
                env.redis:call("ZADD", t .. ":dl", 0, tostring(oid))
            end, uid, dl
        end

        local function settle_failed(oid)
            return logs():find("flash order " .. oid .. ": pay unfinished past its settle time; settled: [^FP]")
        end

        local function hold(pid, oid)
            return env.redis:call("HGET", "{p:" .. pid .. "}:s", tostring(oid))
        end

        it("keeps a hold never recorded PAYING while MariaDB is stalled, then gives it up once", function()
            local p = product({ stock = 1 })
            local oid = entry(a.token, p.id).json.order_id
            local make_stuck = stuck(p.id, oid)
            local mpid = assert(env.mysql:pid())
            assert(shell.sh("kill -STOP " .. mpid) == 0)
            finally(mysql_back)
            make_stuck()
            wait_for("a settle to fail", function() return settle_failed(oid) end, 10)
            assert.truthy(hold(p.id, oid):find("^PAYING|"))
            local s = state(p.id)
            assert.same({ 0, 1 }, { s.remaining, s.held })
            assert(shell.sh("kill -CONT " .. mpid) == 0)
            wait_for("the settle", function() return state(p.id).remaining == 1 end, 10)
            socket.sleep(1) -- more sweeps: nothing released twice
            s = state(p.id)
            assert.same({ 1, 0, 0 }, { s.remaining, s.held, s.paid })
            assert.truthy(hold(p.id, oid):find("^FAILED|"))
            assert.equal("FAILED", env:sql(format("SELECT state FROM flash_orders WHERE id = %d", oid))[1][1])
            assert.equal(0, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            assert.equal(201, entry(b.token, p.id).status)
            expect_error(entry(admin.token, p.id), 409, "OUT_OF_STOCK")
        end)

        it("keeps a hold MySQL recorded PAYING while MariaDB is down, then marks it paid, not refunded", function()
            local p = product({ stock = 2 })
            local oid = entry(a.token, p.id).json.order_id
            local make_stuck = stuck(p.id, oid)
            assert.equal(200, pay(a.token, oid).status)
            -- the pay committed, but Redis never heard of it
            local t = "{p:" .. p.id .. "}"
            env.redis:call("HINCRBY", t .. ":s", "out", -1) -- held = seq - out
            env.redis:call("HINCRBY", t .. ":s", "paid", -1)
            finally(mysql_back)
            env.mysql:stop()
            make_stuck()
            wait_for("a settle to fail", function() return settle_failed(oid) end, 10)
            assert.truthy(hold(p.id, oid):find("^PAYING|"))
            env.mysql:start()
            wait_for("the settle", function() return state(p.id).paid == 1 end, 10)
            socket.sleep(1)
            local s = state(p.id)
            assert.same({ 1, 0, 1 }, { s.remaining, s.held, s.paid })
            assert.truthy(hold(p.id, oid):find("^PAID|"))
            assert.equal(1, count(format("SELECT COUNT(*) FROM flash_orders WHERE id = %d AND state = 'PAID'", oid)))
            assert.equal(1, count(format("SELECT COUNT(*) FROM order_items WHERE product_id = %d", p.id)))
            assert.matches("initial 2, remaining 1, held 0, paid 1", reconcile(p.id), 1, true)
        end)
    end)
end)
