-- spec/support/shop.lua -- what the commerce black-box specs share: a database of their own, servers
-- of the repository's app on it, members and an admin, JSON calls checked against docs/openapi.yaml.
--
--   local shop = require "spec.support.shop"
--   local env = shop.setup("fcfs_orders_spec", { workers = 2 }, { day_seconds = 2 })
--   env.s                                   -- the first server (env:start(conf, app) starts another)
--   local a = env:member("a")               -- signed up, verified in MySQL, logged in: { id=, token= }
--   local admin = env:member("admin", "ADMIN")
--   local res = env:call("POST", "/api/orders", { token = a.token, json = {...}, headers = {...},
--                        path = "/api/orders?x", server = s2 })   -- res.status, res.json, res.body
--   env:sql("SELECT ...")                   -- rows of strings (spec/support/db.lua)
--   shop.epoch("2026-12-02T07:03:12.345+09:00")  -- seconds since the epoch
--   shop.at(60)                             -- RFC 3339 (+09:00) of a minute from now
--   env:stop_all()                          -- e.g. downtime; env:start() brings servers back
--   env:assert_no_errors()                  -- stops all: no server logged an unexpected error
--   env:teardown()
--   shop.setup(name, conf, app, { private_mysql = true })  -- on a mariadbd of its own, env.mysql
--                                           -- (spec/support/db.lua db.private: env.mysql:stop(), :start())
--
-- Members are made through the real signup and login; only the mailed verification (and the admin
-- role, which no public route grants) are set in MySQL directly.
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local db = require "spec.support.db"
local ctl = require "spec.support.redis_ctl"
local secrets = require "spec.support.secrets"
local openapi = require "spec.support.openapi"

local format = string.format

local shop = {}

local doc = openapi.load()
local PASSWORD = "secret12!"

-- one set of fresh keys for every server of the spec (they share the database)
local SECRETS = secrets.env()

-- Days since 1970-01-01 of a civil date (H. Hinnant).
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- RFC 3339 with offset -> seconds since the epoch (nil for anything else).
function shop.epoch(s)
    if type(s) ~= "string" then return nil end
    local y, mo, d, h, mi, sec, frac, sign, oh, om =
        s:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)(%.?%d*)([+-])(%d%d):(%d%d)$")
    if not y then return nil end
    local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + h * 3600 + mi * 60 + sec
    if frac ~= "" then t = t + tonumber("0" .. frac) end
    local off = oh * 3600 + om * 60
    return sign == "+" and t - off or t + off
end

-- RFC 3339 in the business time zone (+09:00), s seconds from now (whole seconds).
function shop.at(s)
    return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(socket.gettime() + s + 9 * 3600)) .. "+09:00"
end

local Env = {}
Env.__index = Env

function shop.setup(dbname, conf, app, opts)
    local env = setmetatable({ dbname = dbname, servers = {}, stopped = {}, n = 0,
        run = format("%x%x", os.time(), math.random(1, 0xffff)) }, Env)
    if opts and opts.private_mysql then
        env.mysql = db.private()
        env.mysql:exec(format("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", dbname))
    else
        db.fresh(dbname)
    end
    env.redis = ctl.start()
    env.s = env:start(conf, app)
    local code, out = env.s:cli("migrate")
    assert(code == 0, out)
    return env
end

-- Another server of the app on the same database and Redis.
function Env:start(conf, app)
    local c = { redis = self.redis.unix, mysql_database = self.dbname, mysql_wait_timeout = 5,
        shared_dicts = { revoked = "8m", catalog = "8m" } }
    if self.mysql then
        for k, v in pairs(self.mysql:conf()) do c[k] = v end
    end
    for k, v in pairs(conf or {}) do c[k] = v end
    c.app = { lifecycle_interval = 0.1 }
    for k, v in pairs(app or {}) do c.app[k] = v end
    local s = server.start { conf = c, env = SECRETS }
    self.servers[#self.servers + 1] = s
    return s
end

-- Stop every running server (their logs are kept for assert_no_errors).
function Env:stop_all()
    for _, s in ipairs(self.servers) do
        s:stop()
        self.stopped[#self.stopped + 1] = s
    end
    self.servers = {}
end

-- Stop everything; no server, stopped earlier or now, logged an unexpected error.
function Env:assert_no_errors()
    self:stop_all()
    for _, s in ipairs(self.stopped) do s:assert_no_errors() end
end

function Env:teardown()
    self:stop_all()
    if self.redis then self.redis:stop() end
    if self.mysql then
        self.mysql:remove()
    else
        db.query(format("DROP DATABASE IF EXISTS %s", self.dbname), false)
    end
end

function Env:sql(q)
    if self.mysql then return self.mysql:exec(q, self.dbname) end
    return db.exec(q, self.dbname)
end

-- One request to server, checked against docs/openapi.yaml (pattern = the route); opts: path,
-- headers, body or json, token. The response gets .json.
function shop.call(srv, method, pattern, opts)
    opts = opts or {}
    local headers = {}
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    local body = opts.body
    if opts.json ~= nil then
        body = cjson.encode(opts.json)
        headers["content-type"] = "application/json"
    elseif body ~= nil then
        headers["content-type"] = headers["content-type"] or "application/json"
    end
    if opts.token then headers.authorization = "Bearer " .. opts.token end
    local res = assert(http.request { port = srv.port, method = method,
        path = opts.path or pattern, headers = headers, body = body, timeout = 10 })
    openapi.check_response(doc, method, pattern, res)
    res.json = cjson.decode(res.body or "")
    return res
end

-- shop.call on the environment's server (or opts.server).
function Env:call(method, pattern, opts)
    return shop.call(opts and opts.server or self.s, method, pattern, opts)
end

-- A verified member (role USER or ADMIN), logged in: { id=, email=, token= }; signed up and logged in
-- through srv (default the environment's server).
function Env:member(label, role, srv)
    self.n = self.n + 1
    local email = format("%s%d.%s@example.com", label, self.n, self.run)
    local res = self:call("POST", "/api/users", { json = { email = email, password = PASSWORD, name = "김민수",
        phone = "010-1234-5678", address = "서울특별시 강남구 테헤란로 1" }, server = srv })
    assert(res.status == 202, res.body)
    local id = res.json.user_id
    self:sql(format("UPDATE users SET status = 'VERIFIED', role = '%s' WHERE id = %d", role or "USER", id))
    local login = self:call("POST", "/api/auth/login", { json = { email = email, password = PASSWORD }, server = srv })
    assert(login.status == 200, login.body)
    return { id = id, email = email, token = login.json.access_token }
end

-- The raw bytes of a JSON request that ends its connection (for spec/support/raw.lua fanout).
function shop.raw_request(method, path, token, body, headers)
    local lines = { format("%s %s HTTP/1.1", method, path), "Host: 127.0.0.1", "Connection: close",
        "Authorization: Bearer " .. token, "Content-Type: application/json",
        "Content-Length: " .. #(body or "") }
    for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
    return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

return shop
