-- The bad-input sweep (issue 11): for every operation of docs/openapi.yaml, the inputs a bot or a
-- careless client sends -- malformed JSON, wrong types, missing and extra fields, huge strings,
-- invalid UTF-8, control characters, zero/negative/huge/non-integer numbers and ids, SQL and
-- Lua-pattern metacharacters, wrong methods, wrong content types, oversized bodies, bad, expired,
-- forged and revoked tokens, another member's ids, bad Idempotency-Keys, bad query arguments --
-- generated from the document's schemas and parameters. Every one must answer a 4xx that the
-- operation documents (405 with Allow for a method the path does not have), with the error body
-- {"error":{"code","message"},"request_id"}; nothing answers 5xx, no server logs an error, and
-- MySQL and Redis are the same after the sweep as before it (row counts and CHECKSUM TABLE of
-- every table, the content of every Redis key but the rate-limit counters rl:*, which count
-- attempts by design).
--
-- Each case is built from a valid request of its operation (the fixtures below: a member's own
-- wishlist item, order and flash hold, the admin's products) with one thing broken, so the case
-- proves that this one thing is refused. The number of inputs tried is printed.
--
-- Decisions the sweep holds the app to: a JSON body field that the operation does not document is
-- refused (400 VALIDATION_FAILED, lib/validate.lua's rule and additionalProperties: false in the
-- document); query arguments the operation does not read are ignored; a body sent to an
-- operation that takes none is ignored.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/sweep_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local shop = require "spec.support.shop"
local http = require "spec.support.http"
local openapi = require "spec.support.openapi"
local mime = require "mime"

local format, rep, concat = string.format, string.rep, table.concat

local PASSWORD = "secret12!"
local MAX_BODY = 1048576 -- the host's max_body default

---------------------------------------------------------------------------------------------------
-- small helpers

-- base64url without padding (the tokens' and cursors' form), through luasocket's mime
local function b64url(s)
    return (mime.b64(s):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end

local function unb64url(s)
    s = s:gsub("-", "+"):gsub("_", "/")
    return (mime.unb64(s .. string.rep("=", (4 - #s % 4) % 4)))
end

local function copy(t)
    if type(t) ~= "table" then return t end
    local c = {}
    for k, v in pairs(t) do c[k] = copy(v) end
    return c
end

-- FNV-1a over a string, as 8 hex digits (only to print a short digest).
local function fnv(s)
    local h = 2166136261
    for i = 1, #s do
        h = bit.bxor(h, s:byte(i))
        h = bit.tobit(h * 16777619 % 4294967296)
    end
    return bit.tohex(h)
end

---------------------------------------------------------------------------------------------------
-- The values: what is wrong with each kind of field

-- strings that break SQL quoting or Lua patterns
local METACHARS = { "' OR '1'='1", "\"; DROP TABLE users; --", "1; DELETE FROM products", "%", "%d+", ".*", "[",
    "(", "%z", "%1", "$1", "\\", "\\u0000", "%s%s%s%s", "a%", "`id`", "--", "/*", "*/" }

-- strings that are not valid UTF-8, or not text (raw bytes inside a JSON string literal)
local BAD_UTF8 = { "\255", "a\192\175b", "\237\160\128", "\244\144\128\128", "\224\160", "\128", "\254\255",
    "\239\191" }
-- JSON escapes that decode to something that is not text
local BAD_ESCAPES = { "\\ud800", "a\\udc00b", "\\u0000", "x\\u001by", "\\u007f" }

local function wrong_types(kind)
    local all = { n = 1, s = "1", b = true, o = { x = 1 }, a = { 1 }, ea = "[]", eo = "{}", null = cjson.null }
    -- ea / eo are raw JSON text (an empty table cannot say which it is)
    local out = {}
    for k, v in pairs(all) do
        if not ((kind == "integer" and k == "n") or (kind == "string" and k == "s")) then out[#out + 1] = { k, v } end
    end
    return out
end

---------------------------------------------------------------------------------------------------

describe("bad-input sweep over docs/openapi.yaml", function()
    local env, doc, ops, a, b, admin
    local ids, tokens = {}, {}
    local tried, failures = 0, {}

    local function count_of(sql) return tonumber(env:sql(sql)[1][1]) end

    local TABLES = { "users", "email_verifications", "sessions", "session_spent_refresh", "mail_outbox", "products",
        "wishlist_items", "orders", "order_items", "order_transitions", "idempotency_keys", "flash_orders" }

    -- MySQL: row count and CHECKSUM TABLE per table; Redis: every key but rl:* with its content.
    local function snapshot()
        local snap, lines = {}, {}
        local sums = env:sql("CHECKSUM TABLE " .. concat(TABLES, ", "))
        for _, r in ipairs(sums) do snap["mysql " .. r[1]:match("[^.]+$") .. " checksum"] = r[2] end
        for _, t in ipairs(TABLES) do snap["mysql " .. t .. " rows"] = count_of("SELECT COUNT(*) FROM " .. t) end
        local keys = assert(env.redis:call("KEYS", "*"))
        local nkeys = 0
        for _, k in ipairs(keys) do
            if not k:find("^rl:") then
                nkeys = nkeys + 1
                local t = env.redis:call("TYPE", k)
                local v
                if t == "string" then
                    v = env.redis:call("GET", k)
                elseif t == "hash" then
                    local h, kv = env.redis:call("HGETALL", k), {}
                    for i = 1, #h, 2 do kv[#kv + 1] = h[i] .. "=" .. h[i + 1] end
                    table.sort(kv)
                    v = concat(kv, ",")
                elseif t == "set" then
                    local m = env.redis:call("SMEMBERS", k)
                    table.sort(m)
                    v = concat(m, ",")
                elseif t == "zset" then
                    v = concat(env.redis:call("ZRANGE", k, 0, -1, "WITHSCORES"), ",")
                elseif t == "list" then
                    v = concat(env.redis:call("LRANGE", k, 0, -1), ",")
                elseif t == "stream" then
                    -- the entries and each group's progress (not the consumers' last-seen times)
                    local parts = {}
                    for _, e in ipairs(env.redis:call("XRANGE", k, "-", "+")) do
                        parts[#parts + 1] = e[1] .. ":" .. concat(e[2], ",")
                    end
                    for _, g in ipairs(env.redis:call("XINFO", "GROUPS", k)) do
                        local f = {}
                        for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
                        parts[#parts + 1] = format("group %s pending %s last %s", f.name, f.pending,
                            f["last-delivered-id"])
                    end
                    v = concat(parts, ";")
                else
                    v = "?"
                end
                local ttl = env.redis:call("PTTL", k)
                snap["redis " .. k] = t .. " " .. tostring(v) .. (ttl == -1 and "" or " (expires)")
            end
        end
        snap["redis keys"] = nkeys
        for k, v in pairs(snap) do lines[#lines + 1] = k .. "=" .. tostring(v) end
        table.sort(lines)
        return snap, fnv(concat(lines, "\n"))
    end

    local function diff(x, y)
        local out = {}
        for k, v in pairs(x) do
            if y[k] ~= v then out[#out + 1] = format("%s: %s -> %s", k, tostring(v), tostring(y[k])) end
        end
        for k, v in pairs(y) do
            if x[k] == nil then out[#out + 1] = format("%s: (none) -> %s", k, tostring(v)) end
        end
        table.sort(out)
        return out
    end

    -- a snapshot once the background (mail delivery, event drain) has nothing left to do
    local function settled()
        local last = snapshot()
        local deadline = socket.gettime() + 20
        while socket.gettime() < deadline do
            socket.sleep(0.5)
            local now, d = snapshot()
            if #diff(last, now) == 0 and count_of("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL") == 0 then
                return now, d
            end
            last = now
        end
        error("the databases did not settle: " .. concat(diff(last, snapshot()), "\n"))
    end

    ---------------------------------------------------------------------------------------------
    -- sending and checking

    -- send one request; opts: method, path, headers, body (string), raw (whole request bytes)
    local function send(opts)
        tried = tried + 1
        if opts.raw then
            local c = assert(http.connect(env.s.port, nil, 10))
            assert(c:send_raw(opts.raw))
            local res, err = c:read_response()
            c:close()
            return res, err
        end
        return http.request { port = env.s.port, method = opts.method, path = opts.path, headers = opts.headers,
            body = opts.body, timeout = 10 }
    end

    local function record(op, label, why, res)
        failures[#failures + 1] = format("%s [%s]: %s -> %s %s", op, label, why, res and res.status or "-",
            res and tostring(res.body):sub(1, 300) or "")
    end

    -- res must be one of `want` (a set of statuses), documented for the operation (405: with an
    -- Allow header instead), with the error body.
    local function expect(op, label, res, err, want)
        if not res then return record(op, label, "no response: " .. tostring(err)) end
        if not want[res.status] then
            local w = {}
            for s in pairs(want) do w[#w + 1] = s end
            table.sort(w)
            return record(op, label, "expected " .. concat(w, "|"), res)
        end
        local method, path = op:match("^(%S+) (%S+)$")
        if res.status == 405 then
            if not res.headers.allow then return record(op, label, "405 without Allow", res) end
        else
            local o = doc.paths[path] and doc.paths[path][method:lower()]
            if not (o and o.responses[tostring(res.status)]) then
                return record(op, label, "status not documented for the operation", res)
            end
        end
        local body = cjson.decode(res.body or "")
        local ok, why = false, "not JSON"
        if body then ok, why = openapi.fits(doc, doc.components.schemas.Error, body, "body") end
        if not ok then return record(op, label, "not the error body: " .. why, res) end
        if type(body.request_id) ~= "string" or body.request_id == "" then
            return record(op, label, "no request_id", res)
        end
    end

    local function set(...)
        local s = {}
        for _, v in ipairs { ... } do s[v] = true end
        return s
    end

    ---------------------------------------------------------------------------------------------
    -- fixtures

    local function at(s)
        return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(socket.gettime() + s)) .. "Z"
    end

    local function call(method, pattern, opts)
        local res = env:call(method, pattern, opts)
        assert(res.status < 300, method .. " " .. pattern .. ": " .. res.status .. " " .. tostring(res.body))
        return res.json
    end

    lazy_setup(function()
        doc = openapi.load()
        ops = openapi.operations(doc)
        env = shop.setup("fcfs_sweep_spec", { workers = 2 }, { hold_seconds = 600, flash_sweep_interval = 0.2,
            payment = { failure_rate = 0 } })
        a, b, admin = env:member("a"), env:member("b"), env:member("admin", "ADMIN")

        -- an expired token: issued by a server whose access tokens live 1 s (same keys and database)
        local short = env:start({ workers = 0 }, { access_ttl = 1 })
        local login = shop.call(short, "POST", "/api/auth/login", { json = { email = a.email, password = PASSWORD } })
        assert(login.status == 200, login.body)
        tokens.expired = login.json.access_token
        for i, s in ipairs(env.servers) do
            if s == short then table.remove(env.servers, i) end
        end
        short:stop()
        env.stopped[#env.stopped + 1] = short
        -- a revoked token: its session logged out
        local gone = call("POST", "/api/auth/login", { json = { email = b.email, password = PASSWORD } })
        env:call("POST", "/api/auth/logout", { token = gone.access_token })
        tokens.revoked = gone.access_token
        -- forged: a's signature on other claims (b's id; the ADMIN role), and a's claims with a changed tag
        local body, tag = a.token:match("^([^.]+)%.(.+)$")
        local uid, sid, role, exp = unb64url(body):match("^at1:(%d+):(%d+):(%u+):(%d+)$")
        assert(uid and role == "USER", "token layout: " .. unb64url(body))
        tokens.forged_uid = b64url(format("at1:%d:%s:%s:%s", b.id, sid, role, exp)) .. "." .. tag
        tokens.forged_admin = b64url(format("at1:%s:%s:ADMIN:%s", uid, sid, exp)) .. "." .. tag
        tokens.forged_exp = b64url(format("at1:%s:%s:%s:%d", uid, sid, role, exp + 86400)) .. "." .. tag
        local flip = tag:sub(1, 1) == "A" and "B" or "A"
        tokens.forged_tag = body .. "." .. flip .. tag:sub(2)
        tokens.unsigned = b64url(format("at1:%s:%s:ADMIN:%s", uid, sid, exp))
        tokens.no_tag = body .. "."

        -- products: NORMAL, an open FLASH sale (a holds a unit), an upcoming FLASH sale
        ids.normal = call("POST", "/api/products", { token = admin.token,
            json = { name = "sweep normal " .. env.run, price = 1000, stock = 50 } }).id
        ids.flash = call("POST", "/api/products", { token = admin.token, json = { name = "sweep flash " .. env.run,
            price = 500, type = "FLASH", stock = 5, sale_starts_at = at(-60), sale_ends_at = at(3600),
            per_user_limit = 1 } }).id
        ids.upcoming = call("POST", "/api/products", { token = admin.token, json = { name = "sweep later " .. env.run,
            price = 500, type = "FLASH", stock = 5, sale_starts_at = at(3600), sale_ends_at = at(7200) } }).id
        ids.item = call("POST", "/api/wishlist", { token = a.token,
            json = { product_id = ids.normal, quantity = 2 } }).id
        ids.order = call("POST", "/api/orders", { token = a.token,
            json = { items = { { product_id = ids.normal, quantity = 1 } } } }).id
        ids.hold = call("POST", "/api/flash/products/{id}/entry", { token = a.token,
            path = "/api/flash/products/" .. ids.flash .. "/entry" }).order_id
        call("GET", "/api/flash/products/{id}", { path = "/api/flash/products/" .. ids.upcoming })
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    ---------------------------------------------------------------------------------------------
    -- what each operation needs to be reached: a valid path, token and body

    -- the fixture a path's {id} names (a's own, or the admin's)
    local PATH_ID = {
        ["/api/products/{id}"] = "normal", ["/api/products/{id}/stock"] = "normal",
        ["/api/wishlist/{id}"] = "item", ["/api/wishlist/{id}/order"] = "item",
        ["/api/orders/{id}"] = "order", ["/api/orders/{id}/cancel"] = "order", ["/api/orders/{id}/return"] = "order",
        ["/api/flash/products/{id}"] = "flash", ["/api/flash/products/{id}/entry"] = "flash",
        ["/api/flash/products/{id}/end"] = "upcoming",
        ["/api/flash/orders/{id}/pay"] = "hold", ["/api/flash/orders/{id}/cancel"] = "hold",
    }
    -- paths whose {id} is a member's own resource: another member's token must get 404
    local OWNED = { item = true, order = true, hold = true }

    -- a valid body per operation with a body (each case breaks one thing of it)
    local function base_body(key)
        local B = {
            ["POST /api/users"] = { email = "sweep.new@example.com", password = PASSWORD, name = "김민수",
                phone = "010-1234-5678", address = "서울특별시", profile_img = "https://example.com/a.png",
                description = "안녕" },
            ["POST /api/users/verify"] = { email = a.email, code = "123456" },
            ["POST /api/users/verify/resend"] = { email = a.email },
            ["POST /api/auth/login"] = { email = a.email, password = PASSWORD },
            ["POST /api/auth/refresh"] = { refresh_token = rep("x", 43) },
            ["PATCH /api/users/me"] = { name = "김철수", phone = "011-1234-5678", address = "부산",
                profile_img = "https://example.com/b.png", description = "hi" },
            ["PUT /api/users/me/password"] = { current_password = PASSWORD, new_password = "newsecret1!",
                confirm_password = "newsecret1!" },
            ["POST /api/products"] = { name = "sweep new", description = "d", price = 100, type = "FLASH", stock = 1,
                sale_starts_at = at(7200), sale_ends_at = at(9000), per_user_limit = 1 },
            ["PATCH /api/products/{id}"] = { name = "sweep renamed", description = "d", price = 100 },
            ["PUT /api/products/{id}/stock"] = { quantity = 7 },
            ["POST /api/wishlist"] = { product_id = ids.normal, quantity = 1 },
            ["PATCH /api/wishlist/{id}"] = { quantity = 3 },
            ["POST /api/orders"] = { items = { { product_id = ids.normal, quantity = 1 } } },
        }
        return copy(assert(B[key], "no base body for " .. key))
    end
    -- PATCH /api/products/{id} edits the upcoming FLASH product, so that the sale fields apply
    local BODY_PATH_ID = { ["PATCH /api/products/{id}"] = "upcoming" }

    local function is_admin(op) return (op.summary or ""):lower():find("admin", 1, true) ~= nil end
    local function secured(op) return op.security ~= nil end

    local function path_with(path, id) return (path:gsub("{id}", function() return tostring(id) end)) end

    local function request_of(key, op, over)
        local method, path = key:match("^(%S+) (%S+)$")
        local headers = { ["accept-language"] = "en" }
        local token = secured(op) and (is_admin(op) and admin.token or a.token) or nil
        if over.token ~= nil then token = over.token or nil end
        if token then headers.authorization = "Bearer " .. token end
        local body
        if op.requestBody then
            body = over.body
            if body == nil then body = cjson.encode(base_body(key)) end
            headers["content-type"] = "application/json"
        elseif over.body then
            body = over.body
            headers["content-type"] = "application/json"
        end
        for k, v in pairs(over.headers or {}) do headers[k] = v or nil end
        local fixture = BODY_PATH_ID[key] or PATH_ID[path]
        local p = over.path or (fixture and path_with(path, ids[fixture]) or path)
        return { method = method, path = p, headers = headers, body = body }
    end

    local function try(key, op, label, over, want)
        local req = request_of(key, op, over)
        local res, err = send(req)
        expect(key, label, res, err, want)
    end

    ---------------------------------------------------------------------------------------------
    -- the case generators

    local BAD_AUTH = function()
        return {
            { "no Authorization", { token = false } },
            { "Basic", { token = false, headers = { authorization = "Basic YTpi" } } },
            { "Bearer alone", { token = false, headers = { authorization = "Bearer" } } },
            { "garbage", { token = "garbage" } },
            { "dots", { token = "a.b.c" } },
            { "expired", { token = tokens.expired } },
            { "revoked", { token = tokens.revoked } },
            { "forged uid", { token = tokens.forged_uid } },
            { "forged role", { token = tokens.forged_admin } },
            { "forged expiry", { token = tokens.forged_exp } },
            { "forged tag", { token = tokens.forged_tag } },
            { "unsigned", { token = tokens.unsigned } },
            { "empty tag", { token = tokens.no_tag } },
            { "huge", { token = rep("A", 600) .. "." .. rep("B", 43) } },
            { "huge 6k", { token = rep("A", 6000) } },
            { "sql", { token = "' OR '1'='1" } },
            { "pattern", { token = "%s%d.*[" } },
            { "utf-8", { token = "토큰.서명" } },
            { "latin-1", { token = "\233t\233.x" } },
        }
    end

    local BAD_IDS = { "0", "00", "-1", "1.5", "1e3", "0x10", "99999999999999999999999", "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "9007199254740993", rep("9", 400), "abc", "%00", "1%00",
        "1%20", "%20", "1;DROP%20TABLE%20users", "%27%20OR%201=1", "%25d", ".*", "%5B", "%D9%A1", "1/..",
        "1%2F2", "%2e%2e" }

    local function auth_cases(key, op)
        if not secured(op) then return end
        for _, c in ipairs(BAD_AUTH()) do try(key, op, "auth: " .. c[1], c[2], set(401)) end
        if is_admin(op) then
            try(key, op, "member on an admin route", { token = a.token }, set(403))
            try(key, op, "forged role", { token = tokens.forged_admin }, set(401))
        end
    end

    local function id_cases(key, op, path)
        if not path:find("{id}", 1, true) then return end
        for _, id in ipairs(BAD_IDS) do
            try(key, op, "id " .. id, { path = path_with(path, id) }, set(404))
        end
        -- ids that fit the pattern but name nothing
        for _, id in ipairs { "1000000000000", "999999999", "5000000001", "1000000001" } do
            try(key, op, "id " .. id .. " (none)", { path = path_with(path, id) }, set(404))
        end
        local fixture = PATH_ID[path]
        if OWNED[fixture] then
            try(key, op, "another member's id", { token = b.token }, set(404))
            if not op.requestBody then -- a body where none is taken is ignored
                try(key, op, "another member's id, with a body", { token = b.token, body = '{"user_id":1}' },
                    set(404))
            end
            try(key, op, "forged uid on the owner's id", { token = tokens.forged_uid }, set(401))
        end
    end

    -- bodies: every case on the operation's valid body with one thing broken
    local function body_cases(key, op)
        if not op.requestBody then return end
        local schema = op.requestBody.content["application/json"].schema
        if schema["$ref"] then
            schema = doc.components.schemas[schema["$ref"]:match("[^/]+$")]
        end
        local base = base_body(key)
        local function with(name, v)
            local t = copy(base)
            t[name] = v
            return cjson.encode(t)
        end
        local function with_raw(name, raw) -- the field's value as raw JSON text
            return (with(name, "@@"):gsub('"@@"', function() return raw end))
        end
        local function try_body(label, body, want, headers)
            try(key, op, label, { body = body, headers = headers }, want or set(400))
        end
        local base_json = cjson.encode(base)

        -- content types
        for _, ct in ipairs { false, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
            "application/json; charset=latin1", "application/jsonx", "text/json", "application/xml",
            "application/json, text/plain", "application/%d" } do
            try_body("content-type " .. tostring(ct), base_json, set(415), { ["content-type"] = ct })
        end
        -- not JSON, or not an object
        for _, s in ipairs { "", " ", "{", "{nope", "[1,", '{"a":}', "nul", base_json .. "}", base_json .. "x",
            '{"a":1,}', "'x'", "\255\254", "NaN", '{"email": NaN}', '{"price": Infinity}', "\239\187\191" .. base_json,
            rep("[", 100000), rep('{"a":', 5000) .. "1" .. rep("}", 5000), "1", '"str"', "true", "null", "[]",
            "[" .. base_json .. "]", "-0", "1e999" } do
            try_body("body " .. s:sub(1, 40), s)
        end
        if schema.required or schema.minProperties then try_body("empty object", "{}") end
        -- missing fields
        for _, name in ipairs(schema.required or {}) do
            try_body("missing " .. name, with(name, nil))
        end
        -- extra fields
        for _, name in ipairs { "role", "id", "user_id", "status", "__proto__", "", "a'; DROP TABLE users; --", "%s",
            rep("k", 300) } do
            try_body("extra " .. name:sub(1, 20), with(name, "ADMIN"))
        end
        try_body("extra numeric key", (base_json:gsub("^{", '{"1":1,')))
        -- every documented field broken in every way its type allows
        for name, ps in pairs(schema.properties or {}) do
            local t = ps.type
            local kind = type(t) == "table" and t[1] or t or (ps.enum and "string")
            local nullable = type(t) == "table"
            if name == "items" then kind = "items" end
            for _, w in ipairs(wrong_types(kind)) do
                if not (nullable and w[1] == "null") and not (kind == "items" and w[1] == "a") then
                    local body
                    if w[1] == "ea" or w[1] == "eo" then
                        body = with_raw(name, w[2])
                    else
                        body = with(name, w[2])
                    end
                    try_body(name .. " as " .. w[1], body)
                end
            end
            if kind == "string" then
                local limit = ps.maxLength or (name == "sale_starts_at" or name == "sale_ends_at") and 64 or 1024
                try_body(name .. " too long", with(name, rep("x", limit + 1)))
                try_body(name .. " too long (Korean)", with(name, rep("가", limit + 1)))
                try_body(name .. " 200k", with(name, rep("y", 200000)))
                for _, s in ipairs(BAD_UTF8) do
                    try_body(name .. " bad utf-8 " .. s:byte(1), (with(name, "@@"):gsub("@@", function() return s end)))
                end
                for _, s in ipairs(BAD_ESCAPES) do
                    try_body(name .. " escape " .. s, (with(name, "@@"):gsub("@@", function() return s end)))
                end
                try_body(name .. " control", with(name, "a\27b"))
                if not nullable then try_body(name .. " blank", with(name, "   ")) end
                if ps.pattern or ps.enum or ps.format or ps.const then
                    for _, m in ipairs(METACHARS) do try_body(name .. " " .. m, with(name, m)) end
                end
            elseif kind == "integer" then
                local lo = ps.minimum or 0
                local numbers = { lo - 1, -1, 1.5, 0.5, -0.5, 1e308, -1e308, 2 ^ 63, -2 ^ 63 }
                if ps.maximum then numbers[#numbers + 1] = ps.maximum + 1 end
                for _, n in ipairs(numbers) do
                    try_body(format("%s = %.17g", name, n), with(name, n))
                end
                for _, raw in ipairs { "1e400", "-1e400", "18446744073709551616", rep("9", 400), "-0.0000001",
                    "1.0000000000000002", "0.1e1x", "1000000000000000.5", "9007199254740993" } do
                    try_body(name .. " = " .. raw:sub(1, 20), with_raw(name, raw))
                end
                for _, m in ipairs { "1 OR 1=1", "1; DROP TABLE products", "%d", "1e3", "0x10", "" } do
                    try_body(name .. " = '" .. m .. "'", with(name, m))
                end
            elseif kind == "items" then
                local many = {}
                for i = 1, 51 do many[i] = { product_id = ids.normal, quantity = 1 } end
                for label, v in pairs {
                    ["51 items"] = many, ["item not an object"] = { 1 },
                    ["item a string"] = { "x" }, ["item an array"] = { { 1, 2 } },
                    ["item extra"] = { { product_id = ids.normal, quantity = 1, price = 0 } },
                    ["item missing quantity"] = { { product_id = ids.normal } },
                    ["item missing product_id"] = { { quantity = 1 } },
                    ["quantity 0"] = { { product_id = ids.normal, quantity = 0 } },
                    ["quantity 100"] = { { product_id = ids.normal, quantity = 100 } },
                    ["quantity 1.5"] = { { product_id = ids.normal, quantity = 1.5 } },
                    ["quantity -1"] = { { product_id = ids.normal, quantity = -1 } },
                    ["quantity string"] = { { product_id = ids.normal, quantity = "1" } },
                    ["product_id 0"] = { { product_id = 0, quantity = 1 } },
                    ["product_id -1"] = { { product_id = -1, quantity = 1 } },
                    ["product_id 1e308"] = { { product_id = 1e308, quantity = 1 } },
                    ["product_id 1.5"] = { { product_id = 1.5, quantity = 1 } },
                    ["product_id sql"] = { { product_id = "1 OR 1=1", quantity = 1 } },
                } do
                    try_body("items " .. label, with(name, v))
                end
                try_body("items empty", with_raw(name, "[]"))
                try_body("items [{}]", with_raw(name, "[{}]"))
                try_body("items as an object", with_raw(name, '{"0":{"product_id":1,"quantity":1}}'))
                try_body("items nested deep", with_raw(name, rep("[", 900) .. rep("]", 900)))
            end
        end
        -- times, where the document has them (FLASH sale window)
        if schema.properties and schema.properties.sale_starts_at then
            for _, t in ipairs { "2026-02-31T10:00:00+09:00", "2027-02-29T10:00:00Z", "2026-04-31T10:00:00Z",
                "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-12-00T00:00:00Z", "2026-12-01T24:00:00Z",
                "2026-12-01T10:60:00Z", "2026-12-01T10:00:60Z", "2026-12-01T10:00:00", "2026-12-01 10:00:00Z",
                "2026-12-01T10:00:00+24:00", "2026-12-01T10:00:00+0900", "0000-01-01T00:00:00Z",
                "0999-12-31T23:59:59Z", "+02026-12-01T10:00:00Z", "2026-12-01T10:00:00.Z", "2026-1-1T1:1:1Z",
                "2026-12-01T10:00:00Z\n", " 2026-12-01T10:00:00Z", "２０２６-12-01T10:00:00Z" } do
                try_body("sale_starts_at " .. t, with("sale_starts_at", t))
                try_body("sale_ends_at " .. t, with("sale_ends_at", t))
            end
            try_body("sale ends before it starts", cjson.encode((function()
                local t = copy(base)
                t.sale_starts_at, t.sale_ends_at = at(9000), at(7200)
                return t
            end)()))
            try_body("sale ends as it starts", cjson.encode((function()
                local t = copy(base)
                t.sale_starts_at, t.sale_ends_at = at(9000), at(9000)
                return t
            end)()))
        end
    end

    local function idempotency_cases(key, op)
        local has = false
        for _, p in ipairs(op.parameters or {}) do
            if p["$ref"] == "#/components/parameters/IdempotencyKey" then has = true end
        end
        if not has then return end
        local path = key:match("^%S+ (%S+)$")
        -- entry and pay with a valid key would act; with a bad key they must not
        for _, k in ipairs { "", " ", rep("k", 256), "a b", "키", "a\tb", "\127", "a\255b" } do
            local over = { headers = { ["idempotency-key"] = k } }
            if path == "/api/flash/products/{id}/entry" then over.path = path_with(path, ids.upcoming) end
            try(key, op, "Idempotency-Key " .. k:sub(1, 20), over, set(400))
        end
    end

    -- query arguments of the operation (limit, cursor, status, email, code)
    local function query_cases(key, op, path)
        local params = {}
        for _, p in ipairs(op.parameters or {}) do
            if p["$ref"] then p = doc.components.parameters[p["$ref"]:match("[^/]+$")] end
            if p["in"] == "query" then params[#params + 1] = p.name end
        end
        if #params == 0 then return end
        local BAD = {
            limit = { "0", "-1", "101", "1.5", "abc", "1e999", "", "%00", "%27%20OR%201=1", "%25d", "nan", "inf",
                "-inf", rep("9", 400), "1%20OR%201=1" },
            cursor = { "!!!", b64url("c1:-1"), b64url("c1:" .. rep("9", 400)), b64url("c1:1e5"), b64url("c1:%d"),
                b64url("c2:1"), b64url("c1:1 OR 1=1"), "%27%20OR%201=1", rep("Q", 6000), "%FF%FE", "%00",
                b64url("c1:9007199254740993") },
            status = { "ordered", "%27%20OR%201=1", "%25a%2B", "", "ORDERED%00", "ORDERED,SHIPPING", "%E2%80%8B" },
            email = { "", "%27%20OR%201=1@x.com", "%25%40%25", "a@b", rep("a", 300) .. "%40example.com",
                "%FF%40x.com" },
            code = { "", "12345", "1234567", "12345a", "%25d%25d%25d", "%27%20OR%201=1",
                "%D9%A1%D9%A2%D9%A3%D9%A4%D9%A5%D9%A6" },
        }
        local VALID = { email = "email=" .. a.email:gsub("@", "%%40"), code = "code=123456" }
        for _, name in ipairs(params) do
            for _, v in ipairs(assert(BAD[name], "no bad values for query " .. name)) do
                local q = { name .. "=" .. v }
                for other, valid in pairs(VALID) do
                    if other ~= name and (op.parameters and key:find("verify", 1, true)) then q[#q + 1] = valid end
                end
                try(key, op, "query " .. name .. "=" .. v:sub(1, 30), { path = path .. "?" .. concat(q, "&") },
                    set(400))
            end
        end
    end

    local function oversized_cases(key, op)
        local method = key:match("^(%S+)")
        if method == "GET" or method == "DELETE" then return end
        local req = request_of(key, op, {})
        local big = '{"x":"' .. rep("z", MAX_BODY) .. '"}'
        try(key, op, "body past max_body", { body = big }, set(413))
        -- the same, chunked
        local head = { format("%s %s HTTP/1.1", req.method, req.path), "Host: 127.0.0.1", "Transfer-Encoding: chunked",
            "Content-Type: application/json", "Connection: close" }
        if req.headers.authorization then head[#head + 1] = "Authorization: " .. req.headers.authorization end
        local chunk = rep("z", 65536)
        local parts = { concat(head, "\r\n"), "\r\n\r\n" }
        for _ = 1, 17 do parts[#parts + 1] = format("%x\r\n%s\r\n", #chunk, chunk) end
        parts[#parts + 1] = "0\r\n\r\n"
        local res, err = send { raw = concat(parts) }
        expect(key, "chunked body past max_body", res, err, set(413))
    end

    local METHODS = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE" }

    local function method_cases(path, item)
        local p = path:gsub("{id}", function() return tostring(ids[PATH_ID[path]] or 1) end)
        for _, m in ipairs(METHODS) do
            if not item[m:lower()] then
                local key = m .. " " .. path
                local admin_only = path:find("^/_host") or path == "/metrics"
                if admin_only then -- checked against the path's own operation, which documents the 404
                    for _, own in ipairs(METHODS) do
                        if item[own:lower()] then key = own .. " " .. path end
                    end
                end
                local res, err = send { method = m, path = p, headers = { authorization = "Bearer " .. a.token,
                    ["content-type"] = "application/json" }, body = m ~= "GET" and "{}" or nil }
                if admin_only then
                    -- the public listener serves nothing of these (/_host/* is 404 in C; /metrics is
                    -- a route whose handler answers 404 off the admin listener, so its path exists)
                    expect(key, "wrong method " .. m, res, err, path == "/metrics" and set(405) or set(404))
                else
                    expect(key, "wrong method", res, err, set(405))
                end
            end
        end
    end

    -- headers every request may carry, on one operation of each kind
    local function header_cases(key, op)
        for _, v in ipairs { "%a%", "en;q=abc", rep("(", 2000), "en;q=1e999", "*;q=-1", "ko-KR,en;q=0.9,,,", "\255" } do
            try(key, op, "Accept-Language " .. v:sub(1, 20),
                { token = "garbage", headers = { ["accept-language"] = v } }, set(401))
        end
        for _, v in ipairs { "%d%d", "' OR 1=1", rep("r", 5000), "a\255b", "" } do
            try(key, op, "X-Request-Id " .. v:sub(1, 20), { token = "garbage", headers = { ["x-request-id"] = v } },
                set(401))
        end
    end

    -- refresh tokens of the right form that are not a live session's: 401, nothing changes
    local function refresh_cases(key, op)
        for label, t in pairs { unknown = rep("A", 43), ["an access token"] = a.token, expired = tokens.expired,
            ["a dot"] = ".", long = rep("r", 512) } do
            try(key, op, "refresh_token " .. label, { body = cjson.encode { refresh_token = t } }, set(401))
        end
    end

    -- malformed HTTP framing, answered by the host before any route (400 with the error body)
    local function framing_cases(key)
        local method, path = key:match("^(%S+) (%S+)$")
        local head = method .. " " .. path .. " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. a.token
            .. "\r\nContent-Type: application/json\r\nConnection: close\r\n"
        local body = cjson.encode(base_body(key))
        for label, bytes in pairs {
            ["two Content-Lengths"] = head .. "Content-Length: " .. #body .. "\r\nContent-Length: " .. (#body + 1)
                .. "\r\n\r\n" .. body,
            ["negative Content-Length"] = head .. "Content-Length: -1\r\n\r\n" .. body,
            ["Content-Length abc"] = head .. "Content-Length: abc\r\n\r\n" .. body,
            ["Content-Length and chunked"] = head .. "Content-Length: " .. #body
                .. "\r\nTransfer-Encoding: chunked\r\n\r\n" .. format("%x\r\n%s\r\n0\r\n\r\n", #body, body),
            ["bad chunk size"] = head .. "Transfer-Encoding: chunked\r\n\r\nzz\r\n" .. body .. "\r\n0\r\n\r\n",
            ["space in a header name"] = head .. "Bad Name: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body,
            ["NUL in a header value"] = head .. "X-A: a\0b\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body,
            ["header without a colon"] = head .. "NoColon\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body,
        } do
            local res, err = send { raw = bytes }
            expect(key, "framing: " .. label, res, err, set(400))
        end
    end

    ---------------------------------------------------------------------------------------------

    it("answers every bad input with a documented 4xx and the error body, and changes nothing", function()
        local before, digest = settled()
        local t0 = socket.gettime()
        local keys = {}
        for k in pairs(ops) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, key in ipairs(keys) do
            local op = ops[key]
            local path = key:match("^%S+ (%S+)$")
            if path:find("^/api/") then
                auth_cases(key, op)
                id_cases(key, op, path)
                body_cases(key, op)
                idempotency_cases(key, op)
                query_cases(key, op, path)
                oversized_cases(key, op)
            end
        end
        for path, item in pairs(doc.paths) do method_cases(path, item) end
        refresh_cases("POST /api/auth/refresh", ops["POST /api/auth/refresh"])
        framing_cases("POST /api/orders")
        framing_cases("PATCH /api/users/me")
        header_cases("GET /api/users/me", ops["GET /api/users/me"])
        header_cases("POST /api/orders", ops["POST /api/orders"])

        local after, digest2 = settled()
        local changed = diff(before, after)
        print(format("\nbad-input sweep: %d inputs tried in %.1f s, %d failures; MySQL %d tables, Redis %d keys "
            .. "(digest %s before, %s after)", tried, socket.gettime() - t0, #failures, #TABLES, before["redis keys"],
            digest, digest2))
        assert(#failures == 0, #failures .. " bad answers:\n" .. concat(failures, "\n"))
        assert(#changed == 0, "the sweep changed the databases:\n" .. concat(changed, "\n"))
        assert.equal(50 - 1, count_of("SELECT stock FROM products WHERE id = " .. ids.normal))
    end)

    it("logged no error (no 500 anywhere)", function()
        env:assert_no_errors()
    end)
end)
