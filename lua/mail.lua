-- mail.lua: the mail outbox and its delivery.
--
--   mail.enqueue(tx, {user_id=, kind=, to=, subject=, body=})  -- inside the caller's transaction
--   app:init_worker(mail.start)                                -- the delivery timer of this worker
--   mail.kick()                                                -- deliver soon (after a commit)
--
-- A message is a row of mail_outbox written in the same MySQL transaction as what caused it (a
-- signup, a resend): no commit, no mail; a commit, a mail. The row holds the whole message sealed
-- with host.crypto.seal (the verification link carries the address), so the table has no
-- plaintext address.
--
-- Delivery: a timer of every worker (host.config.app.mail_interval seconds, default 1) claims up to
-- MAX_BATCH due rows with SELECT ... FOR UPDATE SKIP LOCKED and, in the same transaction, pushes
-- their next_attempt_at LEASE seconds ahead, so concurrent senders (other workers, other hosts)
-- never take the same row. Each claimed row is then delivered and marked sent_at; a failure is
-- recorded (last_error) and retried with exponential backoff (app.mail_retry_base seconds, default
-- 5, doubling, at most 1 h). A sender
-- that dies after claiming leaves the row to be retried when its lease runs out.
--
-- Transports (host.config.app.mail_transport):
--   "file" (default): one RFC 5322 message per row, <run_dir>/mail/<id>.eml, written to a temporary
--       name and renamed: the name is the row's id, so a retried delivery of the same row replaces
--       the same file and a row is delivered exactly once.
--   "smtp": through host.tcp to app.smtp_host:smtp_port (at least once; see transports.smtp).
local host = require "host"
local json = require "lib.json"

local type, tostring, concat, min = type, tostring, table.concat, math.min
local format, gsub, rep, find, match = string.format, string.gsub, string.rep, string.find, string.match
local tonumber = tonumber
local open, rename, remove, date, execute = io.open, os.rename, os.remove, os.date, os.execute

local _M = {}

local MAX_BATCH = 10
local LEASE = 60
local AD = "mail_outbox"
local FROM = "fcfs <no-reply@fcfs.invalid>"

local function app_conf(name, default)
    local app = host.config.app
    local v = type(app) == "table" and app[name] or nil
    if v == nil then return default end
    return v
end

-- mail.enqueue(tx, m): one outbox row (m.user_id may be nil); true | nil, err.
function _M.enqueue(tx, m)
    local sealed = host.crypto.seal(json.encode { to = m.to, subject = m.subject, body = m.body }, AD)
    return tx:query("INSERT INTO mail_outbox (user_id, kind, message_enc, created_at, next_attempt_at) "
        .. "VALUES (?, ?, _binary ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))", m.user_id or host.null, m.kind, sealed)
end

---------------------------------------------------------------------------------------------------
-- RFC 5322 text

-- Standard base64 (RFC 2045) from the host's url-safe variant.
local function b64(s)
    local e = gsub(gsub(host.crypto.b64url_encode(s), "-", "+"), "_", "/")
    return e .. rep("=", (4 - #e % 4) % 4)
end

-- A header value: as is when plain ASCII, else an RFC 2047 encoded-word.
local function header_text(s)
    if not find(s, "[\128-\255]") then return s end
    return "=?UTF-8?B?" .. b64(s) .. "?="
end

-- The body in base64 lines of 76 characters (any UTF-8 text survives any transport).
local function body_b64(s)
    local e, lines = b64(s), {}
    for i = 1, #e, 76 do lines[#lines + 1] = e:sub(i, i + 75) end
    return concat(lines, "\r\n")
end

-- mail.format(id, m) -> the message as RFC 5322 text (CRLF line ends).
function _M.format(id, m)
    local from = app_conf("mail_from", FROM)
    local headers = {
        "From: " .. from,
        "To: " .. m.to,
        "Subject: " .. header_text(m.subject),
        "Date: " .. date("!%a, %d %b %Y %H:%M:%S +0000"),
        format("Message-ID: <outbox.%s@fcfs.invalid>", tostring(id)), -- fixed per row: a resend is a copy
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
    }
    return concat(headers, "\r\n") .. "\r\n\r\n" .. body_b64(m.body) .. "\r\n"
end

---------------------------------------------------------------------------------------------------
-- Transports: fn(id, m) -> true | nil, err

local mail_dir_made = false

local transports = {}

function transports.file(id, m)
    local dir = (host.config.run_dir or "var/run") .. "/mail"
    if not mail_dir_made then
        execute("mkdir -p '" .. gsub(dir, "'", "'\\''") .. "'")
        mail_dir_made = true
    end
    local path = format("%s/%s.eml", dir, tostring(id))
    local tmp = path .. ".tmp"
    local f, err = open(tmp, "wb")
    if not f then
        mail_dir_made = false
        return nil, err
    end
    local ok
    ok, err = f:write(_M.format(id, m))
    f:close()
    if ok then ok, err = rename(tmp, path) end
    if not ok then
        remove(tmp)
        return nil, err
    end
    return true
end

-- An SMTP reply: code (number), text | nil, err. Multi-line replies ("250-...") are read whole.
local function smtp_reply(sock)
    local lines = {}
    while true do
        local line, err = sock:receive("*l")
        if not line then return nil, err end
        lines[#lines + 1] = line
        local code, sep = match(line, "^(%d%d%d)([ -]?)")
        if not code then return nil, "bad SMTP reply: " .. line:sub(1, 80) end
        if sep ~= "-" then return tonumber(code), concat(lines, " ") end
    end
end

-- Sends cmd (nil: only reads) and expects a reply code in [lo, hi]: true | nil, err.
local function smtp_step(sock, cmd, lo, hi)
    if cmd then
        local ok, err = sock:send(cmd .. "\r\n")
        if not ok then return nil, err end
    end
    local code, text = smtp_reply(sock)
    if not code then return nil, text end
    if code < lo or code > hi then return nil, "SMTP: " .. text:sub(1, 200) end
    return true
end

local function envelope(addr)
    return match(addr, "<([^>]+)>") or addr
end

-- SMTP through host.tcp (app.smtp_host / smtp_port, default 127.0.0.1:25; no TLS -- put a local
-- relay in front for that). At least once: a crash between the server's 250 and the sent_at
-- update sends the row again after its lease; the Message-ID, fixed per row, lets the receiving
-- side drop the copy.
function transports.smtp(id, m)
    local sock = host.tcp()
    local ok, err = sock:connect(app_conf("smtp_host", "127.0.0.1"), app_conf("smtp_port", 25))
    if not ok then return nil, "SMTP connect: " .. tostring(err) end
    local data = gsub(_M.format(id, m), "\r\n%.", "\r\n..") -- dot-stuffing (RFC 5321 4.5.2)
    local steps = {
        { nil, 220, 220 },
        { "EHLO " .. app_conf("smtp_helo", "fcfs.invalid"), 250, 250 },
        { "MAIL FROM:<" .. envelope(app_conf("mail_from", FROM)) .. ">", 250, 250 },
        { "RCPT TO:<" .. envelope(m.to) .. ">", 250, 251 },
        { "DATA", 354, 354 },
        { data .. ".", 250, 250 },
        { "QUIT", 221, 221 },
    }
    for i = 1, #steps do
        local st = steps[i]
        ok, err = smtp_step(sock, st[1], st[2], st[3])
        if not ok then
            sock:close()
            -- the message counts as sent once the server took the DATA
            if i == #steps then return true end
            return nil, err
        end
    end
    sock:close()
    return true
end

---------------------------------------------------------------------------------------------------
-- Delivery

-- Seconds before retry number `attempts`: app.mail_retry_base (5) doubling, at most an hour.
local function backoff(attempts)
    return min(app_conf("mail_retry_base", 5) * 2 ^ (attempts - 1), 3600)
end

-- Claims due rows: list of {id=, message_enc=, attempts=} | nil, err.
local function claim()
    return host.mysql.tx(function(tx)
        local rows, err = tx:query("SELECT id, message_enc, attempts FROM mail_outbox WHERE sent_at IS NULL "
            .. "AND next_attempt_at <= UTC_TIMESTAMP(3) ORDER BY id LIMIT " .. MAX_BATCH .. " FOR UPDATE SKIP LOCKED")
        if not rows or #rows == 0 then return rows, err end
        local ids = {}
        for i = 1, #rows do ids[i] = format("%d", rows[i].id) end
        local ok
        ok, err = tx:query("UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = UTC_TIMESTAMP(3) "
            .. "+ INTERVAL ? SECOND WHERE id IN (" .. concat(ids, ",") .. ")", LEASE)
        if not ok then error(err, 0) end -- rolls the claim back
        return rows
    end)
end

-- mail.deliver_due() -> number delivered | nil, err: one claim and its deliveries.
function _M.deliver_due()
    local rows, err = claim()
    if not rows then return nil, err end
    local transport = transports[app_conf("mail_transport", "file")] or transports.smtp
    local sent = 0
    for i = 1, #rows do
        local row = rows[i]
        local plain, e = host.crypto.open(row.message_enc, AD)
        local m = plain and json.decode(plain)
        local ok = false
        if type(m) == "table" then
            ok, e = transport(row.id, m)
        else
            e = "cannot open the message: " .. tostring(e)
        end
        if ok then
            sent = sent + 1
            host.mysql.query("UPDATE mail_outbox SET sent_at = UTC_TIMESTAMP(3), last_error = NULL WHERE id = ?",
                row.id)
        else
            host.log("warn", "mail ", row.id, ": ", tostring(e))
            host.mysql.query("UPDATE mail_outbox SET next_attempt_at = UTC_TIMESTAMP(3) + INTERVAL ? SECOND, "
                .. "last_error = ? WHERE id = ?", backoff(row.attempts + 1), tostring(e):sub(1, 255), row.id)
        end
    end
    return sent
end

local function run(premature)
    if premature then return end
    local n, err
    repeat
        n, err = _M.deliver_due()
    until not n or n < MAX_BATCH
    if not n and err then host.log("warn", "mail delivery: ", tostring(err)) end
end

-- mail.kick(): deliver now, in a task of its own (the caller does not wait).
function _M.kick()
    host.timer.at(0, run)
end

-- mail.start(): for app:init_worker -- delivery every mail_interval seconds, when the config
-- names a transport (host.config.app.mail_transport); without one, only mail.kick() delivers.
function _M.start()
    if app_conf("mail_transport", nil) == nil then return end
    host.timer.every(app_conf("mail_interval", 1), run)
end

_M.transports = transports

return _M
