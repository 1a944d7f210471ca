-- app.lua: the entry point the C host loads into every fresh VM generation (`require "app"`).
--
-- It builds the one web app (lib/web.lua), registers the operational routes below and, as the
-- domain modules arrive, theirs; the host then calls app:run_init_worker() once and
-- app:serve(req) per request (app:handle_error when it raises: lib/web.lua). Nothing here does
-- I/O at load time: work that needs Redis or MySQL goes into app:init_worker(fn) or a handler.
--
-- Operational routes:
--   GET  /healthz       alive (no dependencies)
--   GET  /readyz        every readiness check (see READY_CHECKS) -> 200 or 503
--   GET  /hello         the benchmark route, kept minimal
--   GET  /metrics       admin listener only: Prometheus text from the host
--   POST /_host/reload  admin listener only: build and swap in a new VM generation
--   GET  /_host/status  admin listener only: which worker and generation answered
-- "Admin listener only" routes answer 404 to requests from the public listener (req.admin is not
-- set); the host itself already answers 404 to public requests for /_host/* before Lua runs.
--
-- Domain routes: users.lua (members, sessions, my page); products.lua, wishlist.lua, orders.lua
-- (commerce) with the order lifecycle scheduler jobs/lifecycle.lua; flash.lua -- each registered
-- only when config app.modules selects it (MODULES below). Each route declares its own access
-- (lib/auth.lua: auth.member / auth.admin around the handler; a bare handler is public).
local web = require "lib.web"
local json = require "lib.json"
local host = require "host"
local auth = require "lib.auth"
local users = require "users"
local mail = require "mail"
local products = require "products"
local wishlist = require "wishlist"
local orders = require "orders"
local lifecycle = require "jobs.lifecycle"
local sessions = require "sessions"
local flash = require "flash"

local pcall, tostring, type, ipairs, error = pcall, tostring, type, ipairs, error
local fail = web.fail
local MSG_NOT_FOUND = web.messages.NOT_FOUND

local METRICS_HEADERS = { ["Content-Type"] = "text/plain; version=0.0.4" }

local app = web.new()

-- Readiness checks: {name, fn}; fn() -> true | nil, err (a raise counts as a failure).
-- Later modules append theirs (Redis, MySQL) with ready_check(name, fn).
local READY_CHECKS = {}

local function ready_check(name, fn)
    READY_CHECKS[#READY_CHECKS + 1] = { name = name, fn = fn }
end

ready_check("lua", function() return true end)
ready_check("redis", function()
    local pong, err = host.redis.call("PING")
    return pong == "PONG", err
end)
ready_check("mysql", function()
    local rows, err = host.mysql.query("SELECT 1 AS one")
    return rows ~= nil and rows[1] ~= nil and rows[1].one == 1, err
end)

-- fn, answering only requests that came in on the admin listener (others: 404, as for a route
-- that does not exist).
local function admin_only(fn)
    return function(req)
        if not req.admin then
            fail(404, "NOT_FOUND", MSG_NOT_FOUND)
        end
        return fn(req)
    end
end

local HEALTHY = { json = { status = "ok" } }
app:get("/healthz", function() return HEALTHY end)

app:get("/readyz", function()
    local checks, ready = {}, true
    for i = 1, #READY_CHECKS do
        local c = READY_CHECKS[i]
        local ok, res, err = pcall(c.fn)
        if ok and res then
            checks[c.name] = "ok"
        else
            ready = false
            checks[c.name] = tostring((ok and err) or res or "failed")
        end
    end
    return { status = ready and 200 or 503, json = { ready = ready, checks = checks } }
end)

local HELLO = { json = { ok = true } }
app:get("/hello", function() return HELLO end)

app:get("/metrics", admin_only(function()
    return { body = host.metrics_text(), headers = METRICS_HEADERS }
end))

app:post("/_host/reload", admin_only(function()
    local ok, generation, err = host.reload()
    return {
        status = ok and 200 or 500,
        json = {
            ok = ok and true or false,
            generation = generation or json.null,
            error = (not ok and tostring(err or "reload failed")) or json.null,
        },
    }
end))

app:get("/_host/status", admin_only(function()
    return {
        json = {
            worker_id = host.worker_id,
            worker_count = host.worker_count,
            generation = host.generation,
            pid = host.pid,
            lua_memory_kb = math.floor(collectgarbage("count")),
            jit = jit and jit.version or nil,
        },
    }
end))

-- The domain modules this host serves: config app.modules, a list (or a comma-separated string) of
-- module names; absent = all of them. A module not served here is still a library (the modules call
-- each other's Lua API), only its routes and timers are left out, so one code base deploys as separate
-- services behind a gateway (etc/nginx/). The revocation subscriber runs on every host: every module
-- checks access tokens.
local MODULES = {
    { "users", function()
        users.routes(app)
        app:init_worker(mail.start)
        app:init_worker(sessions.start)
    end },
    -- commerce: catalog, wishlist, orders and the order lifecycle scheduler
    { "products", function() products.routes(app) end },
    { "wishlist", function() wishlist.routes(app) end },
    { "orders", function()
        orders.routes(app)
        app:init_worker(lifecycle.start)
    end },
    -- the flash purchase: entry, pay, cancel, the hold expiry sweeper
    { "flash", function()
        flash.routes(app)
        app:init_worker(flash.start)
    end },
}

-- The set of module names app.modules selects; raises on a name that is no module.
local function served_modules(list)
    local known, want = {}, {}
    for i = 1, #MODULES do known[MODULES[i][1]] = true end
    if list == nil then return known end
    if type(list) == "string" then
        local t = {}
        for name in list:gmatch("[^,%s]+") do t[#t + 1] = name end
        list = t
    end
    if type(list) ~= "table" then error("app.modules: a list of module names", 0) end
    for _, name in ipairs(list) do
        if not known[name] then error("app.modules: no module \"" .. tostring(name) .. "\"", 0) end
        want[name] = true
    end
    return want
end

app:init_worker(auth.start)
local served = served_modules((host.config.app or {}).modules)
for i = 1, #MODULES do
    if served[MODULES[i][1]] then MODULES[i][2]() end
end
app.modules = served

app.ready_check = ready_check
app.admin_only = admin_only

return app
