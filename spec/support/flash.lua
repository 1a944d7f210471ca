-- spec/support/flash.lua -- what the black-box specs of the flash purchase share: calls of its
-- routes (checked against docs/openapi.yaml by spec/support/shop.lua), the product's Redis
-- counters, a wait with a deadline.
--
--   local flash = require "spec.support.flash"
--   local f = flash.new(function() return env, admin end)  -- read at each call (lazy_setup sets them)
--   f.product{ stock = 1 }                 -- a FLASH product, on sale since 5 s for an hour: its JSON
--   f.entry(token, pid [, opts]), f.pay(token, oid [, opts])  -- opts: headers, body, server
--   f.cancel(token, oid), f.view(pid)      -- responses; view asserts 200 and answers the JSON
--   f.state(pid)                           -- {p:pid}:s as numbers: remaining, held, paid, paused, ...
--   f.count(sql)                           -- the first column of the first row, a number
--   f.expect_error(res, status, code)      -- asserts the error response, answers its error object
--   f.wait_for(what, fn [, seconds [, last]])  -- until fn() is truthy, or raises (with last())
--   f.buy(token, pid)                      -- entry, then its pay: the pay's response (or the entry's)
--   f.entry_when_open(token, pid)          -- entries until one gets 201 (every gate reopened: a unit
--       came back through the published release or a sweep), or raises after 3 s: that 201
--   f.losing_writes(keep, lose [, meanwhile])  -- Redis with an AOF written on every command; keep()
--       runs, the AOF is copied, lose() runs; then Redis is killed -9, meanwhile() runs, and Redis
--       restarts from the copy: it comes back without what lose() wrote (its "last second")
local socket = require "socket"
local assert = require "luassert"
local shop = require "spec.support.shop"
local shell = require "spec.support.shell"

local format = string.format

local flash = {}

function flash.new(get)
    local f = {}

    local function call(...)
        local env = get()
        return env:call(...)
    end

    function f.expect_error(res, status, code)
        assert.equal(status, res.status, res.body)
        assert.equal(code, res.json.error.code, res.body)
        return res.json.error
    end

    local pn = 0
    function f.product(over)
        local env, admin = get()
        pn = pn + 1
        local body = { name = format("한정 %d %s", pn, env.run), description = "선착순", price = 5000, type = "FLASH",
            stock = 3, sale_starts_at = shop.at(-5), sale_ends_at = shop.at(3600), per_user_limit = 1 }
        for k, v in pairs(over or {}) do body[k] = v end
        local res = call("POST", "/api/products", { token = admin.token, json = body })
        assert.equal(201, res.status, res.body)
        return res.json
    end

    function f.entry(token, pid, opts)
        opts = opts or {}
        return call("POST", "/api/flash/products/{id}/entry", { path = "/api/flash/products/" .. pid .. "/entry",
            token = token, headers = opts.headers, body = opts.body, server = opts.server })
    end

    function f.pay(token, oid, opts)
        opts = opts or {}
        return call("POST", "/api/flash/orders/{id}/pay", { path = "/api/flash/orders/" .. oid .. "/pay",
            token = token, headers = opts.headers, body = opts.body, server = opts.server })
    end

    function f.cancel(token, oid)
        return call("POST", "/api/flash/orders/{id}/cancel", { path = "/api/flash/orders/" .. oid .. "/cancel",
            token = token })
    end

    function f.view(pid)
        local res = call("GET", "/api/flash/products/{id}", { path = "/api/flash/products/" .. pid })
        assert.equal(200, res.status, res.body)
        return res.json
    end

    function f.state(pid)
        local t = assert(get().redis:call("HGETALL", "{p:" .. pid .. "}:s"))
        local s = {}
        for i = 1, #t, 2 do s[t[i]] = tonumber(t[i + 1]) end
        if s.cap then s.remaining, s.held = s.cap - s.seq, s.seq - s.out end -- redis/flash.lua
        return s
    end

    function f.count(sql)
        return tonumber(get():sql(sql)[1][1])
    end

    function f.wait_for(what, fn, seconds, last)
        local deadline = socket.gettime() + (seconds or 10)
        while socket.gettime() < deadline do
            if fn() then return end
            socket.sleep(0.05)
        end
        error("timed out waiting for " .. what .. (last and (": " .. tostring(last())) or ""))
    end

    function f.buy(token, pid)
        local e = f.entry(token, pid)
        if e.status ~= 201 then return e end
        return f.pay(token, e.json.order_id)
    end

    function f.entry_when_open(token, pid)
        local res
        f.wait_for("the gates to reopen", function()
            res = f.entry(token, pid)
            return res.status == 201
        end, 3, function() return res.body end)
        return res
    end

    function f.losing_writes(keep, lose, meanwhile)
        local r = get().redis
        assert(r:call("CONFIG", "SET", "appendfsync", "always"))
        assert(r:call("CONFIG", "SET", "appendonly", "yes"))
        f.wait_for("the AOF rewrite", function()
            return r:info("aof_rewrite_in_progress") == 0 and r:info("aof_rewrite_scheduled") == 0
                and r:info("aof_enabled") == 1
        end)
        keep()
        local dir = r.dir
        assert(shell.sh(format("cp -r %s/appendonlydir %s/aof.copy", dir, dir)) == 0)
        lose()
        r:kill9()
        if meanwhile then meanwhile() end
        assert(shell.sh(format("rm -rf %s/appendonlydir && mv %s/aof.copy %s/appendonlydir && "
            .. "printf 'appendonly yes\\nappendfsync always\\n' >> %s/redis.conf", dir, dir, dir, dir)) == 0)
        r:restart()
    end

    return f
end

return flash
