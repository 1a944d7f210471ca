-- lib/idempotency.lua: `Idempotency-Key` for creating POSTs (API.md "Conventions").
--
--   return idempotency.tx(req, uid, function(tx)
--       ... tx:query(...) ...
--       return 201, json_value          -- the response, stored with the key
--   end)
--
-- Runs fn in one host.mysql.tx and answers {status=, body=, headers=}. Without the header, that is
-- all. With it, the transaction first inserts the key row (user, key, SHA-256 of the method, path
-- and body), then runs fn, then stores the response text in that row, and commits: the key and
-- what it created commit together or not at all. A concurrent request with the same key blocks on
-- the row's lock until the first transaction ends; when it committed, the insert meets the
-- duplicate key and the request answers the stored response, byte for byte (another body under the
-- key -> 422 IDEMPOTENCY_KEY_REUSED); when it rolled back (an error answer is not stored), the
-- waiting request runs as if it came first. Deadlocks among waiters are retried.
-- idempotency.sweep() deletes records older than app.idempotency_ttl (default 86400 s).
local web = require "lib.web"
local json = require "lib.json"
local fields = require "lib.fields"
local host = require "host"

local error, pcall, setmetatable, find = error, pcall, setmetatable, string.find
local fail, check = web.fail, web.check

local _M = {}

local MSG_REUSED = {
    ko = "같은 Idempotency-Key가 다른 요청에 사용되었습니다.",
    en = "This Idempotency-Key was used for a different request.",
}
local MSG_BAD_KEY = {
    ko = "Idempotency-Key는 1~255자의 인쇄 가능한 ASCII 문자여야 합니다.",
    en = "Idempotency-Key must be 1 to 255 printable ASCII characters.",
}
local MSG_BUSY = {
    ko = "요청이 몰려 처리하지 못했습니다. 잠시 후 다시 시도해주세요.",
    en = "Too many concurrent retries of this request. Please retry shortly.",
}

local DUPLICATE, DEADLOCK, LOCK_WAIT = 1062, 1213, 1205
local MAX_TRIES = 5
local JSON_HEADERS = web.JSON_HEADERS

-- Raised inside the transaction to roll it back and go round again.
local RETRY = setmetatable({}, { __tostring = function() return "idempotency retry" end })

local function stored(uid, key, hash)
    local rows = check(host.mysql.query("SELECT request_hash, status, response FROM idempotency_keys "
        .. "WHERE user_id = ? AND idem_key = ?", uid, key))
    local row = rows[1]
    if not row then return nil end
    if row.request_hash ~= hash then fail(422, "IDEMPOTENCY_KEY_REUSED", MSG_REUSED) end
    return { status = row.status, body = row.response, headers = JSON_HEADERS }
end

function _M.tx(req, uid, fn)
    local key = req.headers and req.headers["idempotency-key"]
    if key == nil then
        local status, value = check(host.mysql.tx(fn))
        return { status = status, json = value }
    end
    if #key < 1 or #key > 255 or find(key, "[^\33-\126]") then
        fail(400, "VALIDATION_FAILED", MSG_BAD_KEY, { ["Idempotency-Key"] = web.localize(req, MSG_BAD_KEY) })
    end
    local hash = host.crypto.sha256(req.method .. " " .. req.path .. "\n" .. (req.body or ""))
    for _ = 1, MAX_TRIES do
        local ok, status, body = pcall(host.mysql.tx, function(tx)
            local r, err, errno = tx:query("INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status, "
                .. "response, created_at) VALUES (?, ?, ?, 0, '', UTC_TIMESTAMP(3))", uid, key, hash)
            if not r then
                if errno == DUPLICATE then return false end
                if errno == DEADLOCK or errno == LOCK_WAIT then error(RETRY, 0) end
                check(r, err, errno)
            end
            local st, value = fn(tx)
            local text = json.encode(value)
            check(tx:query("UPDATE idempotency_keys SET status = ?, response = ? WHERE user_id = ? AND idem_key = ?",
                st, text, uid, key))
            return st, text
        end)
        if not ok then
            if status ~= RETRY then error(status, 0) end
        elseif status == false then
            local res = stored(uid, key, hash)
            if res then return res end
        else
            -- status, body | nil, err (the transaction itself failed)
            check(status, body)
            return { status = status, body = body, headers = JSON_HEADERS }
        end
    end
    fail(503, "UNAVAILABLE", MSG_BUSY, nil, { ["Retry-After"] = "1" })
end

-- Deletes expired records (at most 1000 per call): number deleted | nil, err.
function _M.sweep()
    local r, err = host.mysql.query("DELETE FROM idempotency_keys WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL ? "
        .. "SECOND LIMIT 1000", fields.app_conf("idempotency_ttl", 86400))
    if not r then return nil, err end
    return r.affected_rows
end

return _M
