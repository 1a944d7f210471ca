-- Black-box specs of a member's access-token check (lib/auth.lua, host.crypto.token_request /
-- token_check in C): the real binary, raw HTTP requests with every form of Authorization header,
-- each answered by auth.identify and, beside it, by the Lua check auth ran before the check moved
-- to C (the reference below: req.headers, string.match, hmac_open): the two must agree on every
-- request, and the C one must not have built req.headers where host.header would not. Covered:
-- Bearer in any case, spaces and tabs around the token, other schemes, a repeated Authorization
-- header (req.headers joins the values), 512-byte tokens (accepted) and 513/514-byte ones
-- (refused), a cached token's body with another tag, a token with more after a cached one, bad
-- payloads, and expiry and revocation of a token the cache holds; and auth.verify in `fcfs run`, with
-- and without the FFI (the Lua C API binding).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/access_token_spec.lua
local socket = require "socket"
local cjson = require "cjson"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local secrets = require "spec.support.secrets"

local format = string.format

local APP = [==[
local web = require "lib.web"
local host = require "host"
local auth = require "lib.auth"
local crypto = host.crypto
local tonumber, type, pcall, rawget = tonumber, type, pcall, rawget

local app = web.new()
app:get("/healthz", function() return { json = { ok = true } } end)

-- What auth answered before its check moved to C, from req.headers.
local function reference(req)
    local h = req.headers.authorization
    local token = h and h:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if type(token) ~= "string" or #token > 512 then return "malformed" end
    local payload, why = crypto.hmac_open(token)
    if not payload then return why end
    local uid, sid, role, exp = payload:match("^at1:(%d+):(%d+):(%u+):(%d+)$")
    if not uid then return "malformed" end
    if tonumber(exp) <= host.now() then return "expired" end
    if host.shared.revoked:get("s:" .. sid) then return "revoked" end
    return "ok " .. uid .. " " .. sid .. " " .. role
end

app:get("/check", function(req)
    local ok, c = pcall(auth.identify, req)
    local direct = rawget(req, "headers") == nil
    local got = ok and ("ok " .. c.uid .. " " .. c.sid .. " " .. c.role) or (web.is_fail(c) and c.status or c)
    local want = reference(req)
    return { json = { got = got, want = want, direct = direct } }
end)

-- a signed token of any payload, as auth.issue signs
app:get("/sign", function(req)
    local body = crypto.b64url_encode(req:arg("p"))
    return { json = { token = body .. "." .. crypto.hmac(body), now = host.now() } }
end)

app:get("/revoke", function(req)
    host.shared.revoked:set("s:" .. req:arg("sid"), true, 900)
    return { json = { ok = true } }
end)

return app
]==]

describe("access tokens through the host", function()
    local s, c

    lazy_setup(function()
        s = server.start {
            app = APP,
            conf = { workers = 0, redis = "127.0.0.1:" .. raw.free_port(), shared_dicts = { revoked = "1m" } },
            env = secrets.env(),
        }
        c = assert(http.connect(s.port))
    end)
    lazy_teardown(function()
        if c then c:close() end
        if s then s:stop() end
    end)

    local function get(path)
        local res = assert(c:request { path = path })
        assert.equal(200, res.status, res.body)
        return cjson.decode(res.body)
    end

    local function esc(p) return (p:gsub("[^%w]", function(ch) return format("%%%02X", ch:byte()) end)) end

    local function sign(payload) return get("/sign?p=" .. esc(payload)).token end

    local function future() return math.floor(get("/sign?p=x").now) + 900 end

    -- /check with these header lines -> got, want, direct
    local function check(lines)
        assert(c:send_raw("GET /check HTTP/1.1\r\nHost: x\r\n" .. lines .. "\r\n"))
        local res = assert(c:read_response())
        assert.equal(200, res.status, res.body)
        local b = cjson.decode(res.body)
        return b.got, b.want, b.direct
    end

    -- a validly signed token of len bytes (a role of letters pads it out)
    local function token_of_len(len, exp)
        local body = len - 44
        local p = math.floor(body / 4) * 3 + (body % 4 > 0 and body % 4 - 1 or 0)
        local t = sign("at1:5:6:" .. string.rep("A", p - 19) .. ":" .. exp)
        assert.equal(len, #t)
        return t
    end

    it("agrees with the Lua check on every form of Authorization header", function()
        local exp = future()
        local t = sign("at1:7:42:MEMBER:" .. exp)
        local other = sign("at1:8:42:MEMBER:" .. exp)
        local body, tag = t:match("^(.-)%.(.*)$")
        local t512, t514 = token_of_len(512, exp), token_of_len(514, exp)
        local OK7, OK5 = "ok 7 42 MEMBER", "ok 5 6 " .. string.rep("A", 332)
        -- { header lines, expected answer, read without req.headers }
        local cases = {
            { "Authorization: Bearer " .. t .. "\r\n", OK7, true },
            { "Authorization: Bearer " .. t .. "\r\n", OK7, true }, -- again: from the cache
            { "authorization: bearer " .. t .. "\r\n", OK7, true },
            { "Authorization: BEARER\t" .. t .. "\r\n", OK7, true },
            { "Authorization: BeArEr \t  " .. t .. " \t \r\n", OK7, true },
            { "Authorization:Bearer " .. t .. "\r\n", OK7, true },
            { "", 401, true },
            { "Authorization: \r\n", 401, true },
            { "Authorization: Basic YTpi\r\n", 401, true },
            { "Authorization: Bearer\r\n", 401, true },
            { "Authorization: Bearer" .. t .. "\r\n", 401, true },
            { "Authorization: Bearer " .. t .. " x\r\n", 401, true },
            { "Authorization: Token " .. t .. "\r\n", 401, true },
            -- repeated: req.headers joins the values, which match no more
            { "Authorization: Bearer " .. t .. "\r\nAuthorization: Bearer " .. t .. "\r\n", 401, false },
            { "Authorization: Bearer " .. t .. "\r\nauthorization: \r\n", 401, false },
            -- the cached token's body with another tag, more after it, cut short, another body
            { "Authorization: Bearer " .. body .. "." .. other:match("%.(.*)$") .. "\r\n", 401, true },
            { "Authorization: Bearer " .. t .. "A\r\n", 401, true },
            { "Authorization: Bearer " .. t:sub(1, -2) .. "\r\n", 401, true },
            { "Authorization: Bearer " .. other:match("^(.-)%.") .. "." .. tag .. "\r\n", 401, true },
            { "Authorization: Bearer " .. other .. "\r\n", "ok 8 42 MEMBER", true },
            -- lengths
            { "Authorization: Bearer " .. t512 .. "\r\n", OK5, true },
            { "Authorization: Bearer " .. t512 .. "\r\n", OK5, true },
            { "Authorization: Bearer " .. t512 .. "A\r\n", 401, true },
            { "Authorization: Bearer " .. t514 .. "\r\n", 401, true },
            -- payloads the pattern refuses, and a body that is not base64url
            { "Authorization: Bearer " .. sign("at1:1:2:member:" .. exp) .. "\r\n", 401, true },
            { "Authorization: Bearer " .. sign("at1:1:2:USER:" .. exp .. ":") .. "\r\n", 401, true },
            { "Authorization: Bearer " .. sign("junk") .. "\r\n", 401, true },
            { "Authorization: Bearer nodot\r\n", 401, true },
        }
        for i, case in ipairs(cases) do
            local got, want, direct = check(case[1])
            local what = format("case %d (%s)", i, case[1]:sub(1, 60))
            if case[2] == 401 then
                assert.equal(401, got, what)
                assert.is_nil(want:match("^ok"), what .. ": the Lua check accepted it: " .. want)
            else
                assert.equal(case[2], got, what)
                assert.equal(case[2], want, what)
            end
            assert.equal(case[3], direct, what .. ": req.headers built or not")
        end
        s:assert_no_errors()
    end)

    it("answers the same in `fcfs run`, through the FFI and through the Lua C API without it", function()
        s:write_lua("cli/tokens.lua", [[
local host = require "host"
local auth = require "lib.auth"
local crypto = host.crypto
local t, other = auth.issue(7, 42, "MEMBER"), auth.issue(8, 43, "ADMIN")
local out = {}
local function add(...)
    for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
end
local function v(tok)
    local c, why = auth.verify(tok)
    return c and (c.uid .. "/" .. c.sid .. "/" .. c.role) or why
end
add(v(t), v(t), v(other), v(t:match("^(.-)%.") .. "." .. other:match("%.(.*)$")), v(t .. "A"), v("nodot"), v(nil),
    v(string.rep("a", 513)))
host.shared.revoked:set("s:42", true, 900)
add(v(t), crypto.token_check("bearer	" .. other .. " ", true) ~= nil, crypto.token_check("Basic x", true))
add(type(crypto.token_request))
print(table.concat(out, " "))
]])
        s:write_lua("noffi.lua", "package.loaded.ffi = nil\npackage.preload.ffi = function() error('no ffi') end\n")
        local WANT = "7/42/MEMBER 7/42/MEMBER 8/43/ADMIN forged forged malformed malformed malformed revoked true nil "
            .. "malformed"
        local code, out = s:cli { "run", s.lua_dir .. "/cli/tokens.lua" }
        assert.equal(0, code, out)
        assert.matches(WANT .. " function\n", out, 1, true)
        code, out = s:cli({ "run", s.lua_dir .. "/cli/tokens.lua" }, { FCFS_LUA_INIT = s.lua_dir .. "/noffi.lua" })
        assert.equal(0, code, out)
        assert.matches(WANT .. " nil\n", out, 1, true)
    end)

    it("refuses a cached token once it expires or its session is revoked", function()
        local now = get("/sign?p=x").now
        local soon = sign("at1:9:77:MEMBER:" .. (math.floor(now) + 2))
        local later = sign("at1:10:78:ADMIN:" .. (math.floor(now) + 900))
        local function with(tok) return "Authorization: Bearer " .. tok .. "\r\n" end
        assert.equal("ok 9 77 MEMBER", (check(with(soon))))
        assert.equal("ok 10 78 ADMIN", (check(with(later))))
        assert.equal("ok 10 78 ADMIN", (check(with(later)))) -- cached
        get("/revoke?sid=78")
        local got, want = check(with(later))
        assert.equal(401, got)
        assert.equal("revoked", want)
        socket.sleep(math.floor(now) + 2 - get("/sign?p=x").now + 0.05)
        got, want = check(with(soon))
        assert.equal(401, got)
        assert.equal("expired", want)
        s:assert_no_errors()
    end)
end)
