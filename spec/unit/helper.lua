-- spec/unit/helper.lua: a fake `host` module for the pure-Lua unit specs, plus request builders.
--
--   local helper = require "spec.unit.helper"   -- first line of every unit spec
--
-- Requiring it puts lua/ on package.path and installs package.loaded.host, a stand-in for the
-- C module with the same fields (log, now, sleep, null, config, worker_id, worker_count,
-- generation, metrics_text, reload, request_field, timer, redis, mysql, crypto, shared.revoked,
-- header). host.log records its calls in helper.logs; helper.reset() clears the recording and
-- restores the defaults. busted insulates every spec file, so each file gets a fresh copy.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local cjson = require "cjson"

local helper = { logs = {} }

local host = {
    null = cjson.null,
    config = {},
    worker_id = 0,
    worker_count = 1,
    generation = 1,
    pid = 4242,
    timer = {},
}

function host.log(level, ...)
    helper.logs[#helper.logs + 1] = { level = level, n = select("#", ...), ... }
end

function host.now() return helper.clock end
function host.header(req, name)
    local h = req.headers
    return h and h[name]
end
-- the specs' tables are plain: host.header reads their req.headers
function host.header_direct() return false end
function host.sleep() end
function host.metrics_text() return helper.metrics end
function host.reload() return helper.reload_result() end
-- the specs' request tables hold every field they mean to have: none is made on first use
function host.request_field() end
function host.timer.at() return true end
function host.timer.every() return true end

-- The data plane: answers come from helper.redis_reply / helper.mysql_reply (pipelines: one
-- redis_reply per command, its arguments unpacked).
host.redis = {
    call = function(...) return helper.redis_reply(...) end,
    pipeline = function(cmds)
        helper.pipelines[#helper.pipelines + 1] = cmds
        local res = {}
        for i = 1, #cmds do res[i] = helper.redis_reply(unpack(cmds[i])) end
        return res
    end,
}
host.mysql = { query = function(...) return helper.mysql_reply(...) end }

-- host.crypto stand-in: same names and shapes (hmac and token url-safe text, sha256 and blind hex),
-- no real cryptography -- the specs check the logic around it, not the primitives.
local bit = require "bit"
local function fnv(s)
    local h = 0x811c9dc5
    for i = 1, #s do h = bit.tobit(bit.bxor(h, s:byte(i)) * 16777619) end
    return bit.tohex(h)
end
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
-- base64url without padding, as the real b64url_encode gives it
local function b64url(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        for j = 1, (c and 4) or (b and 3) or 2 do
            local k = bit.band(bit.rshift(n, 18 - (j - 1) * 6), 63) + 1
            out[#out + 1] = B64:sub(k, k)
        end
    end
    return table.concat(out)
end
host.crypto = {
    hmac = function(msg) return "h" .. fnv("key" .. msg) .. fnv(msg .. "key") end,
    sha256 = function(s) return fnv(s) .. fnv("x" .. s) end,
    blind = function(s) return "b" .. fnv(s) end,
    b64url_encode = b64url,
    b64url_decode = function(s)
        if s:find("[^%w%-_]") or #s % 4 == 1 then return nil, "invalid" end
        local out, acc, bits = {}, 0, 0
        for i = 1, #s do
            acc = acc * 64 + B64:find(s:sub(i, i), 1, true) - 1
            bits = bits + 6
            if bits >= 8 then
                bits = bits - 8
                out[#out + 1] = string.char(bit.band(bit.rshift(acc, bits), 255))
                acc = bit.band(acc, bit.lshift(1, bits) - 1)
            end
        end
        return table.concat(out)
    end,
    token = function() helper.tokens = helper.tokens + 1 return "tok" .. helper.tokens end,
}
function host.crypto.hmac_verify(msg, tag) return host.crypto.hmac(msg) == tag end
function host.crypto.hmac_open(signed)
    local dot = signed:find(".", 1, true)
    if not dot then return nil, "malformed" end
    local body = signed:sub(1, dot - 1)
    if host.crypto.hmac(body) ~= signed:sub(dot + 1) then return nil, "forged" end
    local msg = host.crypto.b64url_decode(body)
    if not msg then return nil, "malformed" end
    return msg
end

-- host.crypto.token_check / token_claims stand-ins: the same answers from hmac_open above, and a
-- cache of every token so verified (slot = its order of arrival; helper.token_checks counts the
-- tokens whose tag was checked). helper.uncached = true: nothing cached (slot and gen 0).
-- helper.evict(token): the token's slot goes to the next token verified, in a new generation.
local token_slots, claims_of, gens, last, free = {}, {}, {}, nil, nil
function helper.evict(token)
    free = token_slots[token]
    token_slots[token] = nil
end
function host.crypto.token_check(s, bearer)
    if type(s) ~= "string" then return nil, "malformed" end
    if bearer then
        s = s:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
        if not s then return nil, "malformed" end
    end
    if #s > 512 then return nil, "malformed" end
    local slot = token_slots[s]
    if not slot then
        helper.token_checks = helper.token_checks + 1
        local payload, why = host.crypto.hmac_open(s)
        if not payload then return nil, why end
        local uid, sid, role, exp = payload:match("^at1:(%d+):(%d+):(%u+):(%d+)$")
        if not uid then return nil, "malformed" end
        last = { tonumber(uid), tonumber(sid), role, tonumber(exp), sid }
        if helper.uncached then return 0, 0 end
        slot, free = free or #claims_of + 1, nil
        token_slots[s], claims_of[slot], gens[slot] = slot, last, (gens[slot] or 0) + 1
    end
    last = claims_of[slot]
    return slot, gens[slot]
end
function host.crypto.token_claims() return unpack(last) end
host.crypto.token_slots = 64

-- host.shared stand-in: dicts whose entries expire against helper.clock.
local Dict = {}
Dict.__index = Dict
function Dict:get(k)
    local e = self.data[k]
    if e and (not e.exp or e.exp > helper.clock) then return e.v end
    return nil
end
function Dict:set(k, v, ttl)
    self.data[k] = { v = v, exp = ttl and ttl > 0 and helper.clock + ttl or nil }
    return true
end
function Dict:delete(k) self.data[k] = nil end
function helper.dict() return setmetatable({ data = {} }, Dict) end

function helper.reset()
    helper.logs = {}
    helper.clock = 1700000000.5
    helper.metrics = "# TYPE fcfs_requests_total counter\nfcfs_requests_total 1\n"
    helper.reload_result = function() return true, 2, nil end
    helper.redis_reply = function() return "PONG" end
    helper.mysql_reply = function() return { { one = 1 } } end
    helper.pipelines = {}
    helper.tokens = 0
    helper.token_checks = 0
    helper.uncached = nil
    host.shared = { revoked = helper.dict() }
    host.config = {}
    host.generation = 1
    -- host.stream stand-in: what a streamed answer opened and sent, in helper.stream
    helper.stream = { sent = {} }
    host.stream = {
        open = function(status, content_type)
            helper.stream.status, helper.stream.content_type = status, content_type
            return true
        end,
        send = function(data)
            helper.stream.sent[#helper.stream.sent + 1] = data
            return true
        end,
    }
end
helper.reset()

helper.host = host
package.loaded.host = host

-- helper.req{method=, path=, query=, body=, headers=, remote_addr=, request_id=, admin=}: a request
-- table shaped like the one C builds (header names lower-cased; admin = true for the admin listener).
function helper.req(t)
    t = t or {}
    local headers = {}
    for k, v in pairs(t.headers or {}) do headers[k:lower()] = v end
    return {
        method = t.method or "GET",
        path = t.path or "/",
        query = t.query or "",
        body = t.body,
        headers = headers,
        remote_addr = t.remote_addr or "127.0.0.1",
        request_id = t.request_id or "req-1",
        admin = t.admin,
    }
end

-- helper.json_req(method, path, value_or_string, headers): a request with a JSON body.
function helper.json_req(method, path, body, headers)
    local h = { ["content-type"] = "application/json" }
    for k, v in pairs(headers or {}) do h[k] = v end
    if type(body) ~= "string" then body = cjson.encode(body) end
    return helper.req { method = method, path = path, body = body, headers = h }
end

-- helper.call(app, req) -> status, decoded body (or raw string when not JSON), headers, route
function helper.call(app, req)
    local status, body, headers, route = app:handle(req)
    local decoded = body
    if type(body) == "string" then
        local ok, v = pcall(cjson.decode, body)
        if ok then decoded = v end
    end
    return status, decoded, headers, route
end

-- helper.strict_require(name): require name while writes to _G raise, as in the host VM.
function helper.strict_require(name)
    local mt = getmetatable(_G)
    setmetatable(_G, { __newindex = function(_, k) error("module wrote global '" .. tostring(k) .. "'", 2) end })
    local ok, mod = pcall(require, name)
    setmetatable(_G, mt)
    if not ok then error(mod, 2) end
    return mod
end

return helper
