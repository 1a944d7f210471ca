-- bench/app/app.lua: the app the Redis benchmark serves (lua_dir = bench/app, lua_path = lua/?.lua).
-- GET /bench/stock/:id does what the peer's /products/:id/stock does: one Redis GET of stock:<id>.
-- GET /bench/shared?op=get|incr|set&n=N&keys=K times N operations on host.shared.bench in a Lua
-- loop over K keys (bench/shared_ops.sh; needs shared_dicts = { bench = ... }).
-- GET /bench/hash: one argon2id password_hash at the configured cost (bench/crypto.sh).
-- GET /bench/gate/:id?remaining=R&version=V sets the product's stock gate (host.stock.update);
-- GET /bench/soldout/:id answers what the sold-out crowd gets: host.stock.sold_out(id), no Redis
-- (bench/stock.sh). It answers 200 so wrk counts it as a success; the flash entry answers the same
-- check with an error status and a body of similar size.
-- GET /metrics: the host's Prometheus text (bench/hello_cost.sh counts requests with it).
local web = require "lib.web"
local host = require "host"

local tonumber = tonumber
local now = host.now
local check = web.check
local redis = host.redis

local app = web.new()

app:get("/hello", function() return { json = { ok = true } } end)

app:get("/metrics", function() return { body = host.metrics_text() } end)

app:get("/bench/stock/:id[%d]", function(req)
    local id = req.params.id
    local v = check(redis.call("GET", "stock:" .. id))
    return { json = { product_id = tonumber(id), remaining = tonumber(v) or 0 } }
end)

local SHARED_OPS = {
    get = function(d, k) return d:get(k) end,
    incr = function(d, k) return d:incr(k, 1, 0) end,
    set = function(d, k, i) return d:set(k, i) end,
}

app:get("/bench/shared", function(req)
    local d = host.shared.bench
    local opname = req:arg("op") or "get"
    local op = SHARED_OPS[opname]
    local n, nkeys = tonumber(req:arg("n")) or 1000000, tonumber(req:arg("keys")) or 1
    if not (d and op) then
        web.fail(400, "BAD_REQUEST", { ko = "op 또는 bench 사전이 없습니다.", en = "no such op or no bench dict" })
    end
    local keys = {}
    for i = 1, nkeys do
        keys[i] = "bench:key:" .. i
        d:set(keys[i], i)
    end
    local t0 = now()
    for i = 1, n do
        op(d, keys[i % nkeys + 1], i)
    end
    local dt = now() - t0
    return { json = { op = opname, n = n, keys = nkeys, seconds = dt, ops_per_s = math.floor(n / dt),
                      worker = host.worker_id } }
end)

local stock = host.stock

app:get("/bench/gate/:id[%d]", function(req)
    local ok, err = stock.update(tonumber(req.params.id), tonumber(req:arg("remaining")) or 0,
        tonumber(req:arg("version")) or 1)
    if ok == nil then
        web.fail(503, "UNAVAILABLE", { ko = "재고 게이트를 만들 수 없습니다.", en = err })
    end
    return { json = { applied = ok } }
end)

app:get("/bench/soldout/:id[%d]", function(req)
    local id = tonumber(req.params.id)
    if stock.sold_out(id) then
        return { json = { product_id = id, sold_out = true } }
    end
    return { json = { product_id = id, sold_out = false } }
end)

app:get("/bench/hash", function()
    local h = check(host.crypto.password_hash("correct horse battery staple"))
    return { json = { len = #h } }
end)

return app
