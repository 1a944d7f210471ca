-- users.lua: members -- signup, email verification, login, profile, password, my page.
--
-- Routes (installed by users.routes(app); access declared per route with lib/auth.lua):
--   POST /api/users                    public   signup -> 202, verification mail
--   POST /api/users/verify             public   {email, code}
--   GET  /api/users/verify             public   ?email=&code= (the mailed link)
--   POST /api/users/verify/resend      public   {email} -> 202 (same answer for unknown emails)
--   POST /api/auth/login               public   {email, password} -> tokens, a new device session
--   POST /api/auth/refresh             public   {refresh_token} -> a new pair
--   POST /api/auth/logout              member   this device's session -> 204
--   POST /api/auth/logout-all          member   every session -> {revoked: n}
--   GET  /api/auth/session             member   the caller's session, from the token alone
--   GET  /api/users/me                 member   the profile, decrypted
--   PATCH /api/users/me                member   name, phone, address, profile_img, description
--   PUT  /api/users/me/password        member   every session ends, this one too
--   GET  /api/mypage                   member   {profile, wishlist, recent_orders}
--
-- Personal data (email, name, phone, address, description) is sealed with host.crypto.seal; the
-- associated data binds each value to its column and its user's email blind index, so a sealed value
-- copied into another column or row does not open. The email is found by
-- host.crypto.blind(lower-cased email).
--
-- Limits (host.config.app, defaults in parentheses): login failures per email
-- (login_max_failures_email, 5) and per client address (login_max_failures_ip, 20) within
-- login_failure_window seconds (900) -> 429; resend at most once per resend_interval seconds (60)
-- per email address, known or not; a code lives code_ttl seconds (300) and 5 wrong tries lock it
-- (its MySQL row counts them; a Redis counter per address does the same for unknown addresses).
local host = require "host"
local web = require "lib.web"
local json = require "lib.json"
local validate = require "lib.validate"
local auth = require "lib.auth"
local clock = require "lib.clock"
local sessions = require "sessions"
local mail = require "mail"

local type, tostring, tonumber, pairs, ipairs, unpack, pcall = type, tostring, tonumber, pairs, ipairs, unpack, pcall
local concat = table.concat
local byte, format, gsub = string.byte, string.format, string.gsub
local floor = math.floor
local check, fail = web.check, web.fail
local null = json.null

local _M = {}

local MAX_CODE_ATTEMPTS = 5

local MSG = {
    EMAIL_TAKEN = { ko = "이미 사용 중인 이메일입니다.", en = "This email address is already registered." },
    INVALID_CODE = { ko = "인증 코드가 올바르지 않습니다.", en = "The verification code is not correct." },
    CODE_EXPIRED = {
        ko = "인증 코드가 만료되었습니다. 인증 메일을 다시 요청해주세요.",
        en = "The verification code has expired. Please request a new one.",
    },
    TOO_MANY_ATTEMPTS = {
        ko = "시도 횟수를 초과했습니다. 잠시 후 다시 시도해주세요.",
        en = "Too many attempts. Please try again later.",
    },
    CODE_LOCKED = {
        ko = "인증 코드 입력 횟수를 초과했습니다. 인증 메일을 다시 요청해주세요.",
        en = "Too many wrong codes. Please request a new verification mail.",
    },
    INVALID_CREDENTIALS = {
        ko = "이메일 또는 비밀번호가 올바르지 않습니다.",
        en = "The email address or the password is not correct.",
    },
    EMAIL_NOT_VERIFIED = {
        ko = "이메일 인증이 완료되지 않았습니다.",
        en = "The email address has not been verified yet.",
    },
    WRONG_PASSWORD = { ko = "현재 비밀번호가 올바르지 않습니다.", en = "The current password is not correct." },
    PASSWORD_MISMATCH = {
        ko = "새 비밀번호와 비밀번호 확인이 일치하지 않습니다.",
        en = "The new password and its confirmation do not match.",
    },
    NOTHING_TO_UPDATE = { ko = "수정할 항목을 입력해주세요.", en = "Please give at least one field to update." },
    NOT_FOUND = { ko = "회원을 찾을 수 없습니다.", en = "The member was not found." },
    MAIL_SUBJECT = "[fcfs] 이메일 인증 코드 / Email verification code",
}

local function app_conf(name, default)
    local app = host.config.app
    local v = type(app) == "table" and tonumber(app[name])
    return v or default
end

---------------------------------------------------------------------------------------------------
-- Validation rules

local PROFILE = {
    name = { "name", "text", max = 50, missing = validate.MSG.NAME_REQUIRED },
    phone = { "phone", "phone" },
    address = { "address", "text", max = 200, missing = validate.MSG.ADDRESS_REQUIRED },
    profile_img = { "profile_img", "url", nullable = true },
    description = { "description", "text", max = 1000, multiline = true, nullable = true },
}

local function rule(name, over)
    local r = {}
    for k, v in pairs(PROFILE[name]) do r[k] = v end
    for k, v in pairs(over or {}) do r[k] = v end
    return r
end

local SIGNUP = validate.rules {
    { "email", "email", required = true },
    { "password", "password", required = true },
    rule("name", { required = true }), rule("phone", { required = true }), rule("address", { required = true }),
    rule("profile_img"), rule("description"),
}
local PATCH = validate.rules { rule("name"), rule("phone"), rule("address"), rule("profile_img"), rule("description") }
local VERIFY = validate.rules { { "email", "email", required = true }, { "code", "code", required = true } }
local RESEND = validate.rules { { "email", "email", required = true } }
local LOGIN = validate.rules {
    { "email", "email", required = true },
    { "password", "text", required = true, max = 128, missing = validate.MSG.PASSWORD_REQUIRED },
}
local REFRESH = validate.rules { { "refresh_token", "token", required = true } }
local PASSWORD = validate.rules {
    { "current_password", "text", required = true, max = 128, missing = validate.MSG.PASSWORD_REQUIRED },
    { "new_password", "password", required = true },
    { "confirm_password", "text", required = true, max = 128, missing = validate.MSG.PASSWORD_REQUIRED },
}

---------------------------------------------------------------------------------------------------
-- Sealing

local SEALED = { "email", "name", "phone", "address", "description" }

local function seal(blind, column, v)
    if v == nil or v == null then return null end
    return host.crypto.seal(v, column .. ":" .. blind)
end

local function unseal(blind, column, v)
    if v == nil or v == null then return null end
    local plain, err = host.crypto.open(v, column .. ":" .. blind)
    if not plain then error("users: cannot open " .. column .. ": " .. tostring(err), 0) end
    return plain
end

local function blind_of(email)
    return host.crypto.blind(email)
end

local USER_COLUMNS = "id, email_blind, email_enc, name_enc, phone_enc, address_enc, description_enc, "
    .. "profile_img, role, status, created_at"

local function profile_of(row)
    local b = row.email_blind
    local p = {
        id = row.id,
        profile_img = row.profile_img,
        created_at = clock.from_sql(row.created_at),
    }
    for i = 1, #SEALED do
        local c = SEALED[i]
        p[c] = unseal(b, c, row[c .. "_enc"])
    end
    return p
end

-- INSERT of a user through query (host.mysql.query or a tx's): u = {email=, name=, phone=, address=,
-- description=, profile_img=, password_hash=, role=, status=}; absent or null values stay NULL.
local function insert_user(query, blind, u)
    local cols, marks, vals = { "email_blind" }, { "?" }, { blind }
    for i = 1, #SEALED do
        local c = SEALED[i]
        if u[c] ~= nil and u[c] ~= null then
            cols[#cols + 1], marks[#marks + 1], vals[#vals + 1] = c .. "_enc", "_binary ?", seal(blind, c, u[c])
        end
    end
    for _, c in ipairs { "profile_img", "password_hash", "role", "status" } do
        if u[c] ~= nil and u[c] ~= null then
            cols[#cols + 1], marks[#marks + 1], vals[#vals + 1] = c, "?", u[c]
        end
    end
    return query("INSERT INTO users (" .. concat(cols, ", ") .. ", created_at, updated_at) VALUES ("
        .. concat(marks, ", ") .. ", UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))", unpack(vals))
end

local function load_profile(uid)
    local rows = check(host.mysql.query("SELECT " .. USER_COLUMNS .. " FROM users WHERE id = ?", uid))
    if not rows[1] then fail(404, "NOT_FOUND", MSG.NOT_FOUND) end
    return profile_of(rows[1])
end

---------------------------------------------------------------------------------------------------
-- Verification codes and their mail

local function new_code()
    local r = host.crypto.random(4)
    local b1, b2, b3, b4 = byte(r, 1, 4)
    return format("%06d", (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % 1000000)
end

-- What the code's keyed hash covers: the user binds it to one account.
local function code_msg(uid, code)
    return "vc1:" .. tostring(uid) .. ":" .. code
end

local function urlencode(s)
    return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

-- Writes a fresh code (attempts reset) and its mail, inside tx.
local function issue_code(tx, uid, email)
    local code = new_code()
    check(tx:query("REPLACE INTO email_verifications (user_id, code_hash, expires_at, attempts, created_at) "
        .. "VALUES (?, ?, UTC_TIMESTAMP(3) + INTERVAL ? SECOND, 0, UTC_TIMESTAMP(3))",
        uid, host.crypto.hmac(code_msg(uid, code)), app_conf("code_ttl", 300)))
    local app = host.config.app
    local base = type(app) == "table" and app.public_url or "http://127.0.0.1:8080"
    local link = base .. "/api/users/verify?email=" .. urlencode(email) .. "&code=" .. code
    local minutes = floor(app_conf("code_ttl", 300) / 60)
    check(mail.enqueue(tx, {
        user_id = uid, kind = "verify", to = email, subject = MSG.MAIL_SUBJECT,
        body = concat({
            "인증 코드: " .. code,
            format("%d분 안에 입력하시거나 아래 링크를 여세요.", minutes),
            "",
            "Verification code: " .. code,
            format("Enter it within %d minutes, or open this link:", minutes),
            "",
            link,
            "",
        }, "\n"),
    }))
end

---------------------------------------------------------------------------------------------------
-- Rate limits (Redis: they hold across hosts)

-- Failure counters: {key, limit} pairs; true when any is at its limit. Only failures count (many
-- devices may log in to one account at once); parallel tries that pass the check together can
-- overshoot the limit by their number, once.
local function over_limit(limits)
    local cmds = {}
    for i = 1, #limits do cmds[i] = { "GET", limits[i][1] } end
    local res = check(host.redis.pipeline(cmds))
    for i = 1, #limits do
        if (tonumber(res[i]) or 0) >= limits[i][2] then return true end
    end
    return false
end

local function count_failure(limits, window)
    local cmds = {}
    for i = 1, #limits do
        cmds[#cmds + 1] = { "INCR", limits[i][1] }
        cmds[#cmds + 1] = { "EXPIRE", limits[i][1], window, "NX" }
    end
    check(host.redis.pipeline(cmds))
end

local function too_many(retry_after, msg)
    fail(429, "TOO_MANY_ATTEMPTS", msg or MSG.TOO_MANY_ATTEMPTS, nil, { ["Retry-After"] = tostring(retry_after) })
end

---------------------------------------------------------------------------------------------------
-- Handlers

local function signup(req)
    local v = validate.body(req, SIGNUP)
    local blind = blind_of(v.email)
    local taken = check(host.mysql.query("SELECT id FROM users WHERE email_blind = ?", blind))
    if taken[1] then fail(409, "EMAIL_TAKEN", MSG.EMAIL_TAKEN) end
    local hash = check(host.crypto.password_hash(v.password))
    local uid = check(host.mysql.tx(function(tx)
        local r, err, errno = insert_user(function(...) return tx:query(...) end, blind, {
            email = v.email, name = v.name, phone = v.phone, address = v.address, description = v.description,
            profile_img = v.profile_img, password_hash = hash, role = "USER", status = "PENDING_VERIFICATION",
        })
        if not r and errno == 1062 then fail(409, "EMAIL_TAKEN", MSG.EMAIL_TAKEN) end
        check(r, err, errno)
        issue_code(tx, r.insert_id, v.email)
        return r.insert_id
    end))
    mail.kick()
    return { status = 202, json = { user_id = uid, status = "PENDING_VERIFICATION" } }
end

-- Checks a code: "ok" | "wrong" | "locked" | "expired" | "none"
local function check_code(uid, code)
    return check(host.mysql.tx(function(tx)
        local rows = check(tx:query("SELECT code_hash, attempts, expires_at <= UTC_TIMESTAMP(3) AS expired "
            .. "FROM email_verifications WHERE user_id = ? FOR UPDATE", uid))
        local row = rows[1]
        if not row then return "none" end
        if row.attempts >= MAX_CODE_ATTEMPTS then return "locked" end
        if row.expired == 1 then return "expired" end
        if not host.crypto.hmac_verify(code_msg(uid, code), row.code_hash) then
            check(tx:query("UPDATE email_verifications SET attempts = attempts + 1 WHERE user_id = ?", uid))
            return row.attempts + 1 >= MAX_CODE_ATTEMPTS and "locked" or "wrong"
        end
        check(tx:query("UPDATE users SET status = 'VERIFIED', updated_at = UTC_TIMESTAMP(3) WHERE id = ?", uid))
        check(tx:query("DELETE FROM email_verifications WHERE user_id = ?", uid))
        return "ok"
    end))
end

local VERIFIED = { json = { status = "VERIFIED" } }

-- Wrong codes per address, counted in Redis for known and unknown addresses alike (5 within
-- code_ttl -> 429, as the code's own lock on its MySQL row does), so that the lock does not tell
-- which addresses are registered; a resend clears it with the new code.
local function verify_limit(blind)
    return { { "rl:verify:" .. blind, MAX_CODE_ATTEMPTS } }
end

local function verify_with(v)
    local blind = blind_of(v.email)
    local limits, window = verify_limit(blind), app_conf("code_ttl", 300)
    if over_limit(limits) then too_many(window, MSG.CODE_LOCKED) end
    -- an unknown address and a verified one (whose code is gone) answer as a wrong code: the
    -- endpoint does not tell which addresses are registered
    local rows = check(host.mysql.query("SELECT id FROM users WHERE email_blind = ?", blind))
    local outcome = rows[1] and check_code(rows[1].id, v.code) or "none"
    if outcome == "ok" then return VERIFIED end
    if outcome == "expired" then fail(410, "CODE_EXPIRED", MSG.CODE_EXPIRED) end
    if outcome ~= "locked" then count_failure(limits, window) end
    if outcome == "locked" or over_limit(limits) then too_many(window, MSG.CODE_LOCKED) end
    fail(400, "INVALID_CODE", MSG.INVALID_CODE)
end

local function verify(req) return verify_with(validate.body(req, VERIFY)) end
-- the link's own arguments only: a mail client or a tracker may append others (ignored, as everywhere)
local function verify_link(req)
    return verify_with(validate.check(req, { email = req:arg("email"), code = req:arg("code") }, VERIFY))
end

local RESENT = { status = 202, json = { status = "ACCEPTED" } }

local function resend(req)
    local v = validate.body(req, RESEND)
    local blind = blind_of(v.email)
    local interval = app_conf("resend_interval", 60)
    -- the limit applies to unknown addresses too, so the answers cannot tell them apart
    local ok = check(host.redis.call("SET", "rl:resend:" .. blind, "1", "EX", interval, "NX"))
    if ok == null then too_many(interval) end
    check(host.redis.call("DEL", verify_limit(blind)[1][1]))
    local rows = check(host.mysql.query("SELECT id, status FROM users WHERE email_blind = ?", blind))
    local u = rows[1]
    if u and u.status == "PENDING_VERIFICATION" then
        check(host.mysql.tx(function(tx)
            issue_code(tx, u.id, v.email)
            return true
        end))
        mail.kick()
    end
    return RESENT
end

-- A hash for unknown emails, so that they cost one verification like a known one; made once per
-- VM by a timer that init_worker starts (users.routes), so that no login pays for it.
local dummy_hash

local function make_dummy_hash(premature)
    if premature then return end
    dummy_hash = dummy_hash or host.crypto.password_hash(host.crypto.token(16))
end

local function login(req)
    local v = validate.body(req, LOGIN)
    local blind = blind_of(v.email)
    local window = app_conf("login_failure_window", 900)
    local limits = {
        { "rl:login:e:" .. blind, app_conf("login_max_failures_email", 5) },
        { "rl:login:ip:" .. tostring(req.remote_addr), app_conf("login_max_failures_ip", 20) },
    }
    if over_limit(limits) then too_many(window) end
    local rows = check(host.mysql.query("SELECT " .. USER_COLUMNS .. ", password_hash FROM users "
        .. "WHERE email_blind = ?", blind))
    local u = rows[1]
    local good
    if u then
        good = check(host.crypto.password_verify(u.password_hash, v.password))
    else
        make_dummy_hash()
        check(host.crypto.password_verify(check(dummy_hash, "no dummy hash"), v.password))
        good = false
    end
    if not good then
        count_failure(limits, window)
        fail(401, "INVALID_CREDENTIALS", MSG.INVALID_CREDENTIALS)
    end
    if u.status ~= "VERIFIED" then fail(403, "EMAIL_NOT_VERIFIED", MSG.EMAIL_NOT_VERIFIED) end
    host.redis.call("DEL", limits[1][1])
    if host.crypto.password_needs_rehash(u.password_hash) then
        local h = host.crypto.password_hash(v.password)
        if h then host.mysql.query("UPDATE users SET password_hash = ? WHERE id = ?", h, u.id) end
    end
    local res = sessions.create(u, req)
    res.user = {
        id = u.id, name = unseal(blind, "name", u.name_enc), email = unseal(blind, "email", u.email_enc), role = u.role,
    }
    return { json = res }
end

local function refresh(req)
    local v = validate.body(req, REFRESH)
    return { json = sessions.refresh(v.refresh_token) }
end

local function logout(req)
    sessions.logout(req.auth)
end

local function logout_all(req)
    return { json = { revoked = sessions.end_all(req.auth.uid) } }
end

local function session_info(req)
    local a = req.auth
    return { json = { user_id = a.uid, session_id = a.sid, role = a.role, expires_at = clock.rfc3339(a.exp) } }
end

local function me(req)
    return { json = load_profile(req.auth.uid) }
end

local function patch_me(req)
    local v = validate.body(req, PATCH)
    local uid = req.auth.uid
    local rows = check(host.mysql.query("SELECT email_blind FROM users WHERE id = ?", uid))
    if not rows[1] then fail(404, "NOT_FOUND", MSG.NOT_FOUND) end
    local blind = rows[1].email_blind
    local sets, vals = {}, {}
    for _, name in ipairs { "name", "phone", "address", "description" } do
        if v[name] == null then
            sets[#sets + 1] = name .. "_enc = NULL"
        elseif v[name] ~= nil then
            sets[#sets + 1] = name .. "_enc = _binary ?"
            vals[#vals + 1] = seal(blind, name, v[name])
        end
    end
    if v.profile_img ~= nil then
        sets[#sets + 1] = "profile_img = ?"
        vals[#vals + 1] = v.profile_img
    end
    if #sets == 0 then validate.fail(req, "body", MSG.NOTHING_TO_UPDATE) end
    vals[#vals + 1] = uid
    check(host.mysql.query("UPDATE users SET " .. concat(sets, ", ") .. ", updated_at = UTC_TIMESTAMP(3) "
        .. "WHERE id = ?", unpack(vals)))
    return { json = load_profile(uid) }
end

local function change_password(req)
    local v = validate.body(req, PASSWORD)
    if v.new_password ~= v.confirm_password then fail(400, "PASSWORD_MISMATCH", MSG.PASSWORD_MISMATCH) end
    local uid = req.auth.uid
    local rows = check(host.mysql.query("SELECT password_hash FROM users WHERE id = ?", uid))
    if not rows[1] then fail(404, "NOT_FOUND", MSG.NOT_FOUND) end
    if not check(host.crypto.password_verify(rows[1].password_hash, v.current_password)) then
        fail(401, "WRONG_PASSWORD", MSG.WRONG_PASSWORD)
    end
    local hash = check(host.crypto.password_hash(v.new_password))
    check(host.mysql.query("UPDATE users SET password_hash = ?, updated_at = UTC_TIMESTAMP(3) WHERE id = ?", hash, uid))
    return { json = { status = "PASSWORD_CHANGED", revoked = sessions.end_all(uid) } }
end

local function mypage(req)
    local uid = req.auth.uid
    return { json = { profile = load_profile(uid), wishlist = require("wishlist").items_of(uid, 20),
        recent_orders = require("orders").recent(req, uid, 5) } }
end

-- users.routes(app): the routes of the table in the header.
function _M.routes(app)
    app:post("/api/users", signup)
    app:post("/api/users/verify", verify)
    app:get("/api/users/verify", verify_link)
    app:post("/api/users/verify/resend", resend)
    app:post("/api/auth/login", login)
    app:post("/api/auth/refresh", refresh)
    app:post("/api/auth/logout", auth.member(logout))
    app:post("/api/auth/logout-all", auth.member(logout_all))
    app:get("/api/auth/session", auth.member(session_info))
    app:get("/api/users/me", auth.member(me))
    app:patch("/api/users/me", auth.member(patch_me))
    app:put("/api/users/me/password", auth.member(change_password))
    app:get("/api/mypage", auth.member(mypage))
    app:init_worker(function() host.timer.at(0, make_dummy_hash) end)
end

-- users.create_admin(email, password) -> uid | nil, err: a verified ADMIN (for lua/cli/admin.lua).
function _M.create_admin(email, password, name)
    local blind = blind_of(email)
    local hash, err = host.crypto.password_hash(password)
    if not hash then return nil, err end
    local r, errno
    r, err, errno = insert_user(host.mysql.query, blind, {
        email = email, name = name or "admin", phone = "010-0000-0000", address = "-", password_hash = hash,
        role = "ADMIN", status = "VERIFIED",
    })
    if not r then return nil, errno == 1062 and "email taken" or err end
    return r.insert_id
end

local ADMIN = validate.rules { { "email", "email", required = true }, { "password", "password", required = true } }

-- users.admin_input(email, password) -> {email=, password=} | nil, "field: message; ..." (the
-- signup rules, in English, for the command line).
function _M.admin_input(email, password)
    local ok, v = pcall(validate.check, { headers = { ["accept-language"] = "en" } },
        { email = email, password = password }, ADMIN)
    if ok then return v end
    if not web.is_fail(v) then error(v, 0) end
    local errs = {}
    for k, m in pairs(v.details or {}) do errs[#errs + 1] = k .. ": " .. m end
    return nil, concat(errs, "; ")
end

return _M
