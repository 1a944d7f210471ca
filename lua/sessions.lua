-- sessions.lua: device sessions (one per login) and their tokens.
--
--   sessions.create(user, req)     -> {access_token, refresh_token, expires_in}  (a new session)
--   sessions.refresh(token)        -> a new pair for the session; the old refresh token is spent
--   sessions.logout(claims)        -> ends the caller's session
--   sessions.end_all(uid)          -> n: ends every session of the user (logout-all, new password)
--   sessions.purge()               -> deletes sessions over for more than a day (a timer: start)
--
-- A refresh token is 32 random bytes (url-safe base64); the sessions table keeps only its SHA-256
-- and the session's sliding expiry (refresh_ttl from the last use). On refresh the row is locked,
-- its hash replaced by the new token's and the old hash recorded in session_spent_refresh: a spent
-- token presented again (a stolen copy, or a client that lost the race) is reuse, and the session it
-- belonged to is revoked. Ending sessions marks revoked_at in MySQL (no refresh any more) and
-- revokes their access tokens through auth.revoke (every worker of every host, at once).
local host = require "host"
local web = require "lib.web"
local auth = require "lib.auth"

local check, fail = web.check, web.fail
local tostring, tonumber, type, sub = tostring, tonumber, type, string.sub

local _M = {}

local MSG_BAD_REFRESH = { ko = "유효하지 않은 리프레시 토큰입니다.", en = "The refresh token is not valid." }

local function pair(uid, sid, role, refresh)
    local access = auth.issue(uid, sid, role)
    return { access_token = access, refresh_token = refresh, token_type = "Bearer", expires_in = auth.access_ttl() }
end

local function client_info(req)
    local ua = req.headers and req.headers["user-agent"]
    if type(ua) ~= "string" then ua = host.null else ua = sub(ua, 1, 255) end
    return ua, req.remote_addr or host.null
end

-- auth.revoke, or 503 when Redis cannot take the revocation (the client retries; what MySQL
-- already recorded is idempotent).
local function broadcast(sids)
    check(auth.revoke(sids))
end

-- sessions.create(user, req): user = {id=, role=}.
function _M.create(user, req)
    local refresh = host.crypto.token(32)
    local ua, ip = client_info(req)
    local r = check(host.mysql.query("INSERT INTO sessions (user_id, refresh_hash, created_at, last_used_at, "
        .. "expires_at, user_agent, ip) VALUES (?, ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), "
        .. "UTC_TIMESTAMP(3) + INTERVAL ? SECOND, ?, ?)", user.id, host.crypto.sha256(refresh),
        auth.refresh_ttl(), ua, ip))
    return pair(user.id, r.insert_id, user.role, refresh)
end

-- sessions.refresh(token) -> pair; 401 UNAUTHORIZED for an unknown, expired, revoked or spent one.
function _M.refresh(token)
    local hash = host.crypto.sha256(token)
    local new = host.crypto.token(32)
    local result, reused = check(host.mysql.tx(function(tx)
        local rows = check(tx:query("SELECT s.id, s.user_id, u.role, s.revoked_at IS NULL AND "
            .. "s.expires_at > UTC_TIMESTAMP(3) AS live FROM sessions s JOIN users u ON u.id = s.user_id "
            .. "WHERE s.refresh_hash = ? FOR UPDATE", hash))
        local s = rows[1]
        if s then
            if s.live ~= 1 then return false end
            check(tx:query("UPDATE sessions SET refresh_hash = ?, last_used_at = UTC_TIMESTAMP(3), "
                .. "expires_at = UTC_TIMESTAMP(3) + INTERVAL ? SECOND WHERE id = ?",
                host.crypto.sha256(new), auth.refresh_ttl(), s.id))
            check(tx:query("INSERT INTO session_spent_refresh (refresh_hash, session_id, spent_at) "
                .. "VALUES (?, ?, UTC_TIMESTAMP(3))", hash, s.id))
            return pair(s.user_id, s.id, s.role, new)
        end
        rows = check(tx:query("SELECT session_id FROM session_spent_refresh WHERE refresh_hash = ?", hash))
        if not rows[1] then return false end
        local sid = rows[1].session_id
        check(tx:query("UPDATE sessions SET revoked_at = UTC_TIMESTAMP(3) WHERE id = ? AND revoked_at IS NULL", sid))
        return false, sid
    end))
    if reused then
        host.log("warn", "refresh token reuse: session ", tostring(reused), " revoked")
        broadcast({ reused })
    end
    if not result then fail(401, "UNAUTHORIZED", MSG_BAD_REFRESH) end
    return result
end

-- sessions.logout(claims): the caller's session only.
function _M.logout(claims)
    check(host.mysql.query("UPDATE sessions SET revoked_at = UTC_TIMESTAMP(3) WHERE id = ? AND user_id = ? "
        .. "AND revoked_at IS NULL", claims.sid, claims.uid))
    broadcast({ claims.sid })
end

-- sessions.end_all(uid) -> n sessions ended now. Sessions ended within the access-token lifetime
-- are broadcast again, so a retry after a failed broadcast still reaches every worker.
function _M.end_all(uid)
    local ttl = auth.access_ttl()
    local ids, n = check(host.mysql.tx(function(tx)
        local rows = check(tx:query("SELECT id FROM sessions WHERE user_id = ? AND (revoked_at IS NULL OR "
            .. "revoked_at > UTC_TIMESTAMP(3) - INTERVAL ? SECOND) FOR UPDATE", uid, ttl))
        local r = check(tx:query("UPDATE sessions SET revoked_at = UTC_TIMESTAMP(3) WHERE user_id = ? "
            .. "AND revoked_at IS NULL", uid))
        local list = {}
        for i = 1, #rows do list[i] = rows[i].id end
        return list, r.affected_rows
    end))
    broadcast(ids)
    return n
end

-- sessions.purge() -> rows deleted: sessions expired or revoked more than a day ago (their spent
-- refresh tokens go with them; no token of theirs can be valid any more), in batches.
function _M.purge()
    local total = 0
    repeat
        local r = check(host.mysql.query("DELETE FROM sessions WHERE expires_at < UTC_TIMESTAMP(3) - INTERVAL 1 DAY "
            .. "OR revoked_at < UTC_TIMESTAMP(3) - INTERVAL 1 DAY LIMIT 1000"))
        total = total + r.affected_rows
    until r.affected_rows < 1000
    return total
end

-- sessions.start(): for app:init_worker -- purge every host.config.app.session_purge_interval
-- seconds (etc/fcfs.lua: 3600); without that key, no purge timer.
function _M.start()
    local app = host.config.app
    local every = type(app) == "table" and tonumber(app.session_purge_interval)
    if not every then return end
    host.timer.every(every, function(premature)
        if not premature then _M.purge() end
    end)
end

return _M
