-- lib/auth.lua: access tokens, route access and session revocation on every worker of every host.
--
--   app:get("/api/users/me", auth.member(function(req) ... req.auth.uid ... end))
--   app:post("/api/products", auth.admin(fn))      -- a member whose role is ADMIN, else 403
--   local token, exp = auth.issue(uid, sid, role)  -- a signed access token
--   auth.revoke({sid, ...})                        -- refused everywhere from the next request on
--   app:init_worker(auth.start)                    -- the revocation subscriber of this worker
--
-- Routes declare their access where they are declared (auth.member / auth.admin around the
-- handler; a bare handler is public); there is no global filter.
--
-- Access token = b64url("at1:<uid>:<sid>:<role>:<exp>") .. "." .. host.crypto.hmac(that b64url part).
-- It is checked locally: the tag (constant time, in C), the expiry, and the revocation set
-- host.shared.revoked (shared memory of the node, key "s:<sid>") -- no Redis or MySQL round trip per
-- request. Lifetime: host.config.app.access_ttl seconds (default 900).
--
-- Revocation (logout, logout-all, password change, refresh-token reuse) of session ids:
--   1. the ids go into the Redis sorted set auth:revoked (score = revocation time in ms; entries
--      older than the access-token lifetime are pruned: no token of theirs can still be valid), then
--      are PUBLISHed on the channel auth:revoked;
--   2. the revoking worker writes them into host.shared.revoked at once, so every worker of its node
--      refuses them from the next request;
--   3. every worker of every host holds a pinned Redis connection SUBSCRIBEd to the channel (a timer
--      task started by auth.start) and writes what arrives into its node's host.shared.revoked.
--      Whenever that subscription is (re)established, the whole set is rebuilt from the sorted set
--      (entries younger than the access-token lifetime), so a message lost while a subscriber was
--      disconnected cannot let a revoked token through.
-- Entries in host.shared.revoked expire with the access-token lifetime.
local web = require "lib.web"
local host = require "host"
local channel = require "lib.channel"

local tonumber, tostring, type, concat = tonumber, tostring, type, table.concat
local gmatch, format = string.gmatch, string.format
local floor = math.floor
local new_tab = require "table.new"
local fail = web.fail

local _M = {
    REVOKED_KEY = "auth:revoked",
    CHANNEL = "auth:revoked",
}

local MSG_UNAUTHORIZED = { ko = "로그인이 필요합니다.", en = "Authentication is required." }
local MSG_FORBIDDEN = { ko = "접근 권한이 없습니다.", en = "You do not have access to this resource." }
local UNAUTHORIZED_HEADERS = { ["WWW-Authenticate"] = 'Bearer realm="fcfs"' }

-- Configuration: host.config.app.access_ttl / refresh_ttl (seconds).
local function app_conf(name, default)
    local app = host.config.app
    local v = type(app) == "table" and tonumber(app[name]) or nil
    return v or default
end

function _M.access_ttl() return app_conf("access_ttl", 900) end
function _M.refresh_ttl() return app_conf("refresh_ttl", 14 * 86400) end

local function revoked_dict()
    local shared = host.shared
    local d = shared and shared.revoked
    if not d then error("host.shared.revoked is not declared (config: shared_dicts = { revoked = \"8m\" })", 2) end
    return d
end

---------------------------------------------------------------------------------------------------
-- Tokens

-- auth.issue(uid, sid, role) -> token, exp (seconds since the epoch)
function _M.issue(uid, sid, role)
    local crypto = host.crypto
    local exp = floor(host.now()) + _M.access_ttl()
    local body = crypto.b64url_encode(concat({ "at1", tostring(uid), tostring(sid), role, tostring(exp) }, ":"))
    return body .. "." .. crypto.hmac(body), exp
end

-- The check of a token (host.crypto.token_check / token_request, in C): its tag, then its body
-- decoded and parsed; C keeps the tokens it so verified in a fixed cache of this VM, so that a
-- member's later requests skip all that, and names the cache slot holding the token and the slot's
-- generation (which changes when another token takes the slot). Here, one claims table and
-- revocation key per slot: a member clicking again makes no garbage, a new one a claims table and
-- its key. Claims are shared by the requests of one token: read-only for handlers. Expiry and
-- revocation are checked at every use.
-- Made at their size, one entry per slot (host.crypto.token_slots, ~260 KB each): filled in any
-- order, they would otherwise grow through their hash parts while a crowd arrives.
local NSLOTS = host.crypto.token_slots
local slot_claims, slot_rkey, slot_gen = new_tab(NSLOTS, 0), new_tab(NSLOTS, 0), new_tab(NSLOTS, 0)

-- slot, gen as token_check answers -> claims | nil, why
local function admit(slot, gen)
    if not slot then return nil, gen end
    local claims, rkey
    if gen ~= 0 and slot_gen[slot] == gen then
        claims, rkey = slot_claims[slot], slot_rkey[slot]
    else
        local uid, sid, role, exp, sid_text = host.crypto.token_claims()
        claims, rkey = { uid = uid, sid = sid, role = role, exp = exp }, "s:" .. sid_text
        if gen ~= 0 then slot_claims[slot], slot_rkey[slot], slot_gen[slot] = claims, rkey, gen end
    end
    if claims.exp <= host.now() then return nil, "expired" end
    if revoked_dict():get(rkey) then return nil, "revoked" end
    return claims
end

-- auth.verify(token) -> claims {uid=, sid=, role=, exp=} | nil, why ("malformed", "forged",
-- "expired", "revoked")
function _M.verify(token)
    return admit(host.crypto.token_check(token, false))
end

-- The request's bearer token (Authorization: Bearer <token>) checked as verify does. The header is
-- read by C where host.header would read it without req.headers (no Lua string is made for it).
local function verify_bearer(req)
    local crypto = host.crypto
    if host.header_direct(req) then
        local slot, gen = crypto.token_request()
        if slot ~= false then return admit(slot, gen) end
    end
    return admit(crypto.token_check(host.header(req, "authorization"), true))
end

-- auth.identify(req) -> claims (also req.auth); raises 401 UNAUTHORIZED.
function _M.identify(req)
    local claims = verify_bearer(req)
    if not claims then fail(401, "UNAUTHORIZED", MSG_UNAUTHORIZED, nil, UNAUTHORIZED_HEADERS) end
    req.auth = claims
    return claims
end

-- auth.member(fn): fn runs only for a valid, unrevoked access token (req.auth holds its claims).
function _M.member(fn)
    return function(req)
        _M.identify(req)
        return fn(req)
    end
end

-- auth.admin(fn): as member, and the role must be ADMIN (403 FORBIDDEN otherwise).
function _M.admin(fn)
    return function(req)
        local claims = _M.identify(req)
        if claims.role ~= "ADMIN" then fail(403, "FORBIDDEN", MSG_FORBIDDEN) end
        return fn(req)
    end
end

---------------------------------------------------------------------------------------------------
-- Revocation

local function now_ms() return floor(host.now() * 1000) end

local function remember(sid, ttl)
    if ttl > 0 then revoked_dict():set("s:" .. sid, true, ttl) end
end

-- auth.revoke(sids) -> true | nil, err (Redis unreachable: nothing was broadcast; retry).
function _M.revoke(sids)
    if #sids == 0 then return true end
    local now, ttl = now_ms(), _M.access_ttl()
    local cmds = {}
    local zadd, score = { "ZADD", _M.REVOKED_KEY }, format("%d", now)
    for i = 1, #sids do
        zadd[#zadd + 1] = score
        zadd[#zadd + 1] = tostring(sids[i])
    end
    cmds[1] = zadd
    cmds[2] = { "ZREMRANGEBYSCORE", _M.REVOKED_KEY, "-inf", format("(%d", now - ttl * 1000) }
    cmds[3] = { "PUBLISH", _M.CHANNEL, concat(sids, ",") }
    local res, err = host.redis.pipeline(cmds)
    if not res then return nil, err end
    if type(res[1]) == "table" and res[1][1] == false then return nil, res[1][2] end
    for i = 1, #sids do remember(sids[i], ttl) end
    return true
end

-- Rebuilds host.shared.revoked from the sorted set: true | nil, err.
function _M.rebuild()
    local now, ttl = now_ms(), _M.access_ttl()
    local res, err = host.redis.call("ZRANGEBYSCORE", _M.REVOKED_KEY, format("%d", now - ttl * 1000), "+inf",
        "WITHSCORES")
    if not res then return nil, err end
    for i = 1, #res, 2 do
        local left = (tonumber(res[i + 1]) + ttl * 1000 - now) / 1000
        remember(res[i], left)
    end
    return true
end

local function apply_message(payload)
    local ttl = _M.access_ttl()
    for sid in gmatch(payload, "%d+") do remember(sid, ttl) end
end

local state = { subscribed = false, backoff = 0.05 }
_M.state = state

-- auth.start(): for app:init_worker -- starts this worker's subscriber; it ends when the VM
-- generation retires (host.exiting()). Without a host.shared.revoked dict (an
-- app run without sessions) it starts nothing, and every access token is refused (a 500 names the
-- missing dict).
function _M.start()
    if not (host.shared and host.shared.revoked) then
        host.log("warn", "host.shared.revoked is not declared: no session revocation subscriber")
        return
    end
    -- before the first request: a fresh node must not accept what another already revoked (the
    -- subscriber rebuilds again once subscribed, for what is revoked in between)
    local ok, err = _M.rebuild()
    if not ok then host.log("warn", "revocation set not rebuilt at start: ", tostring(err)) end
    host.timer.at(0, channel.follow(_M.CHANNEL, { label = "revocation subscriber", on_message = apply_message,
        on_subscribed = _M.rebuild, state = state }))
end

return _M
