-- bench/app/app.lua: the app the Redis benchmark serves (lua_dir = bench/app, lua_path = lua/?.lua).
-- GET /bench/stock/:id does what the peer's /products/:id/stock does: one Redis GET of stock:<id>.
-- GET /bench/hash: one argon2id password_hash at the configured cost (bench/crypto.sh).
local web = require "lib.web"
local host = require "host"

local tonumber = tonumber
local check = web.check
local redis = host.redis

local app = web.new()

app:get("/hello", function() return { json = { ok = true } } end)

app:get("/bench/stock/:id[%d]", function(req)
    local id = req.params.id
    local v = check(redis.call("GET", "stock:" .. id))
    return { json = { product_id = tonumber(id), remaining = tonumber(v) or 0 } }
end)

app:get("/bench/hash", function()
    local h = check(host.crypto.password_hash("correct horse battery staple"))
    return { json = { len = #h } }
end)

return app
