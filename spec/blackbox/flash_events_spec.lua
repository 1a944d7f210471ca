-- Black-box specs of GET /api/flash/products/:id/events (lua/flash.lua): live remaining stock as
-- server-sent events, read from the node's stock gate. The real binary with 2 workers, a private
-- redis-server and a database of its own.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/flash_events_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local shop = require "spec.support.shop"
local sse = require "spec.support.sse"

local format = string.format

describe("flash events (SSE)", function()
    local env, a, admin

    local function product(over)
        local body = { name = "한정 " .. env.run .. math.random(1e6), description = "선착순", price = 5000,
            type = "FLASH", stock = 3, sale_starts_at = shop.at(-5), sale_ends_at = shop.at(3600), per_user_limit = 1 }
        for k, v in pairs(over or {}) do body[k] = v end
        local res = env:call("POST", "/api/products", { token = admin.token, json = body })
        assert.equal(201, res.status, res.body)
        return res.json
    end

    local function stock_event(st)
        local ev = assert(st:next(5))
        assert.equal("stock", ev.event)
        return cjson.decode(ev.data)
    end

    -- Redis commands of one kind run so far (INFO commandstats)
    local function calls(cmd)
        local info = assert(env.redis:call("INFO", "commandstats"))
        return tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)") or 0)
    end

    lazy_setup(function()
        env = shop.setup("fcfs_flash_events_spec", { workers = 2 }, { hold_seconds = 30 })
        a = env:member("a")
        admin = env:member("admin", "ADMIN")
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    it("answers 404 before any stream for a product that is not FLASH", function()
        local st = assert(sse.open(env.s.port, "/api/flash/products/999999/events"))
        assert.equal(404, st.status)
        assert.matches("application/json", st.headers["content-type"])
        st:close()
    end)

    it("pushes remaining stock at once and at every change, and ends after the sale closed", function()
        local p = product()
        local st = assert(sse.open(env.s.port, "/api/flash/products/" .. p.id .. "/events"))
        assert.equal(200, st.status)
        assert.equal("text/event-stream", st.headers["content-type"])
        assert.same({ product_id = p.id, remaining = 3, state = "OPEN" }, stock_event(st))
        assert.equal(2000, st.retry)
        local res = env:call("POST", "/api/flash/products/{id}/entry", { token = a.token,
            path = "/api/flash/products/" .. p.id .. "/entry" })
        assert.equal(201, res.status, res.body)
        assert.same({ product_id = p.id, remaining = 2, state = "OPEN" }, stock_event(st))
        res = env:call("POST", "/api/flash/orders/{id}/cancel", { token = a.token,
            path = "/api/flash/orders/" .. res.json.order_id .. "/cancel" })
        assert.equal(204, res.status, res.body)
        assert.equal(3, stock_event(st).remaining)
        res = env:call("POST", "/api/flash/products/{id}/end", { token = admin.token,
            path = "/api/flash/products/" .. p.id .. "/end" })
        assert.equal(200, res.status, res.body)
        assert.equal("CLOSED", stock_event(st).state)
        local ev, how = st:next(5)
        assert.is_nil(ev)
        assert.equal("end", how)
        st:close()
    end)

    it("shows the opening of an upcoming sale", function()
        local p = product({ sale_starts_at = shop.at(2) })
        local st = assert(sse.open(env.s.port, "/api/flash/products/" .. p.id .. "/events"))
        assert.equal("UPCOMING", stock_event(st).state)
        assert.equal("OPEN", stock_event(st).state)
        st:close()
    end)

    it("reads Redis per worker, not per client: 40 watchers for 2 s", function()
        local p = product()
        local streams = {}
        for i = 1, 40 do
            streams[i] = assert(sse.open(env.s.port, "/api/flash/products/" .. p.id .. "/events"))
            assert.equal(3, stock_event(streams[i]).remaining)
        end
        local before = calls("hmget")
        socket.sleep(2)
        local used = calls("hmget") - before
        for i = 1, 40 do streams[i]:close() end
        -- per client it would be 40 x 4 polls/s x 2 s = 320; per worker at most 2 x 10/s x 2 s
        assert.truthy(used <= 45, format("%d HMGETs in 2 s", used))
    end)

    it("logs no unexpected error", function()
        env:assert_no_errors()
    end)
end)
