-- Black-box specs of the member platform (API.md "Users and sessions"): the real binary with the
-- repository's app, a database of its own migrated by `fcfs migrate`, a private redis-server (its
-- rate-limit and revocation keys start empty, and it can be restarted), real secrets in the
-- environment and the file mail transport, whose .eml files the spec reads for the codes. Every
-- response is also checked against docs/openapi.yaml.
--
-- Covered: every row and error code of the Users table (signup, verification by code and by link,
-- expiry, locking after 5 wrong codes, resend and its limit, login and its limits, refresh rotation
-- and reuse detection, logout on one device, logout-all, password change, profile read and update,
-- my page), bad input on every route (nothing written), no plaintext personal data in MySQL, no
-- user enumeration at login (same answer, comparable time), revocation reaching every worker at once
-- and another host through pub/sub (the delay is printed), holding after a Redis restart, and a
-- subscriber that rebuilds the set after a lost message.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/users_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local db = require "spec.support.db"
local ctl = require "spec.support.redis_ctl"
local shell = require "spec.support.shell"
local secrets = require "spec.support.secrets"
local shop = require "spec.support.shop"

local format = string.format
local now = socket.gettime

local DBNAME = "fcfs_users_spec"
local PASSWORD = "secret12!"
local RUN = format("%x%x", os.time(), math.random(1, 0xffff))


-- one set of keys for every server of the spec: they are hosts of one deployment
local SECRETS = secrets.env()

local function hex(s)
    return (s:gsub(".", function(c) return format("%02X", c:byte()) end))
end

-- A server with the repository's app on the spec's database and redis. Only the main one sweeps
-- the mail outbox (other servers would deliver into their own directories).
local function start(redis, conf, env)
    local c = {
        redis = redis.unix,
        mysql_database = DBNAME,
        shared_dicts = { revoked = "8m" },
        app = { public_url = "http://fcfs.test" },
    }
    for k, v in pairs(conf or {}) do c[k] = v end
    local e = {}
    for k, v in pairs(SECRETS) do e[k] = v end
    for k, v in pairs(env or {}) do e[k] = v end
    return server.start { conf = c, env = e }
end

describe("members", function()
    local redis, s

    -- one request; the response is checked against docs/openapi.yaml (pattern = the route)
    local function call(method, pattern, opts)
        return shop.call(opts and opts.server or s, method, pattern, opts)
    end

    local function expect_error(res, status, code)
        assert.equal(status, res.status, res.body)
        assert.equal(code, res.json.error.code, res.body)
        return res.json.error
    end

    local n = 0
    local function new_email()
        n = n + 1
        return format("user%d.%s@Example.com", n, RUN)
    end

    local function signup(email, over)
        local body = {
            email = email, password = PASSWORD, name = "김민수", phone = "010-1234-5678",
            address = "서울특별시 강남구 테헤란로 1", description = "선착순 구매 테스트 회원",
        }
        for k, v in pairs(over or {}) do body[k] = v end
        return call("POST", "/api/users", { json = body })
    end

    -- The last mail to user_id: { text = raw message, code =, link = }.
    local function mail_of(user_id)
        local rows = db.wait_until(function()
            local r = db.exec(format("SELECT id FROM mail_outbox WHERE user_id = %d AND sent_at IS NOT NULL "
                .. "ORDER BY id DESC LIMIT 1", user_id), DBNAME)
            return r[1] and r
        end, 10, "the verification mail")
        local path = format("%s/mail/%s.eml", s.dir, rows[1][1])
        local text = assert(shell.read_file(path), path)
        local b64 = text:match("\r\n\r\n(.*)$"):gsub("%s", "")
        local _, body = shell.sh("printf %s " .. shell.q(b64) .. " | base64 -d")
        return { text = text, body = body, code = body:match("(%d%d%d%d%d%d)"), link = body:match("(http%S+)") }
    end

    local function verify(email, code)
        return call("POST", "/api/users/verify", { json = { email = email, code = code } })
    end

    -- a fresh pending member: email, its user id, the mailed code
    local function pending()
        local email = new_email()
        local uid = signup(email).json.user_id
        return email, uid, mail_of(uid).code
    end

    local function signup_verified(email)
        local res = signup(email)
        assert.equal(202, res.status, res.body)
        local m = mail_of(res.json.user_id)
        local v = verify(email, m.code)
        assert.equal(200, v.status, v.body)
        return res.json.user_id
    end

    local function login(email, password, srv)
        return call("POST", "/api/auth/login", { json = { email = email, password = password or PASSWORD },
            server = srv })
    end

    local function me(token, srv)
        return call("GET", "/api/users/me", { token = token, server = srv })
    end

    local function count(table_name)
        return tonumber(db.exec("SELECT COUNT(*) FROM " .. table_name, DBNAME)[1][1])
    end

    lazy_setup(function()
        db.fresh(DBNAME)
        redis = ctl.start()
        s = start(redis, { app = { mail_transport = "file", mail_interval = 0.1, public_url = "http://fcfs.test" } })
        local code, out = s:cli("migrate")
        assert(code == 0, out)
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if redis then redis:stop() end
        db.query(format("DROP DATABASE IF EXISTS %s", DBNAME), false)
    end)

    describe("signup and verification", function()
        it("signs up (202), mails a 6-digit code and a link, refuses a taken email in any case (409)", function()
            local email = new_email()
            local res = signup(email)
            assert.equal(202, res.status, res.body)
            assert.equal("PENDING_VERIFICATION", res.json.status)
            local m = mail_of(res.json.user_id)
            assert.matches("^%d%d%d%d%d%d$", m.code)
            assert.matches("To: " .. email:lower():gsub("%p", "%%%0"), m.text)
            assert.equal("http://fcfs.test/api/users/verify?email=" .. email:lower():gsub("@", "%%40")
                .. "&code=" .. m.code, m.link)
            assert.matches("\r\nSubject: =%?UTF%-8%?B%?", m.text)
            expect_error(signup(email:upper()), 409, "EMAIL_TAKEN")
        end)

        it("refuses login before verification (403) and verifies by code (wrong 400, right 200)", function()
            local email = new_email()
            local uid = signup(email).json.user_id
            expect_error(login(email), 403, "EMAIL_NOT_VERIFIED")
            expect_error(login(email, "wrong123!"), 401, "INVALID_CREDENTIALS")
            local code = mail_of(uid).code
            local wrong = code == "000000" and "000001" or "000000"
            expect_error(verify(email, wrong), 400, "INVALID_CODE")
            local v = verify(email, code)
            assert.equal(200, v.status, v.body)
            assert.equal("VERIFIED", v.json.status)
            assert.equal(200, login(email).status)
            -- spent: the code answers as wrong now, like any code for an unknown address
            local again = expect_error(verify(email, code), 400, "INVALID_CODE")
            local unknown = expect_error(verify(new_email(), code), 400, "INVALID_CODE")
            assert.equal(unknown.message, again.message)
        end)

        it("verifies through the mailed link", function()
            local email = new_email()
            local uid = signup(email).json.user_id
            local m = mail_of(uid)
            local path = m.link:gsub("^http://fcfs.test", "")
            local v = call("GET", "/api/users/verify", { path = path })
            assert.equal(200, v.status, v.body)
            assert.equal(200, login(email).status)
        end)

        it("answers 410 for an expired code", function()
            local email, uid, code = pending()
            db.exec(format("UPDATE email_verifications SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND "
                .. "WHERE user_id = %d", uid), DBNAME)
            expect_error(verify(email, code), 410, "CODE_EXPIRED")
        end)

        it("locks the code after 5 wrong tries (429), even for the right code", function()
            local email, uid, code = pending()
            local wrong = code == "999999" and "999998" or "999999"
            for _ = 1, 4 do expect_error(verify(email, wrong), 400, "INVALID_CODE") end
            local locked = expect_error(verify(email, wrong), 429, "TOO_MANY_ATTEMPTS")
            expect_error(verify(email, code), 429, "TOO_MANY_ATTEMPTS")
            -- an unknown address locks the same way (the lock does not reveal registrations)
            local nobody = new_email()
            for _ = 1, 4 do expect_error(verify(nobody, wrong), 400, "INVALID_CODE") end
            assert.equal(locked.message, expect_error(verify(nobody, wrong), 429, "TOO_MANY_ATTEMPTS").message)
            -- a resend gives a new code and a new count
            assert.equal(202, call("POST", "/api/users/verify/resend", { json = { email = email } }).status)
            local fresh = db.wait_until(function()
                local m = mail_of(uid)
                return m.code ~= code and m.code
            end, 10, "the new code")
            assert.equal(200, verify(email, fresh).status)
        end)

        it("resends a new code (202), rate-limited (429), with the same answer for unknown emails", function()
            local email = new_email()
            local uid = signup(email).json.user_id
            local first = mail_of(uid)
            local r1 = call("POST", "/api/users/verify/resend", { json = { email = email } })
            assert.equal(202, r1.status, r1.body)
            local second = db.wait_until(function()
                local m = mail_of(uid)
                return m.text ~= first.text and m
            end, 10, "a second mail")
            expect_error(call("POST", "/api/users/verify/resend", { json = { email = email } }), 429,
                "TOO_MANY_ATTEMPTS")
            local unknown = call("POST", "/api/users/verify/resend", { json = { email = new_email() } })
            assert.equal(202, unknown.status)
            assert.equal(r1.body, unknown.body)
            -- the old code is void, the new one works
            if first.code ~= second.code then
                expect_error(verify(email, first.code), 400, "INVALID_CODE")
            end
            local ok = verify(email, second.code)
            assert.equal(200, ok.status, ok.body)
        end)
    end)

    describe("sessions", function()
        local email

        lazy_setup(function()
            email = new_email()
            signup_verified(email)
        end)

        it("logs in (200) with tokens and the user, and shows the session from the token", function()
            local res = login(email)
            assert.equal(200, res.status, res.body)
            assert.equal("Bearer", res.json.token_type)
            assert.equal(900, res.json.expires_in)
            assert.equal(email:lower(), res.json.user.email)
            assert.equal("김민수", res.json.user.name)
            local info = call("GET", "/api/auth/session", { token = res.json.access_token })
            assert.equal(200, info.status, info.body)
            assert.equal(res.json.user.id, info.json.user_id)
            assert.equal("USER", info.json.role)
            assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%+09:00$", info.json.expires_at)
        end)

        it("logout on device A leaves device B working (204)", function()
            local a, b = login(email).json, login(email).json
            local out = call("POST", "/api/auth/logout", { token = a.access_token })
            assert.equal(204, out.status, out.body)
            expect_error(me(a.access_token), 401, "UNAUTHORIZED")
            assert.equal(200, me(b.access_token).status)
            expect_error(call("POST", "/api/auth/refresh", { json = { refresh_token = a.refresh_token } }), 401,
                "UNAUTHORIZED")
            assert.equal(200, call("POST", "/api/auth/refresh", { json = { refresh_token = b.refresh_token } }).status)
        end)

        it("logout-all ends every session of the user (200 {revoked})", function()
            local a, b = login(email).json, login(email).json
            local res = call("POST", "/api/auth/logout-all", { token = b.access_token })
            assert.equal(200, res.status, res.body)
            assert.is_true(res.json.revoked >= 2)
            expect_error(me(a.access_token), 401, "UNAUTHORIZED")
            expect_error(me(b.access_token), 401, "UNAUTHORIZED")
            expect_error(call("POST", "/api/auth/refresh", { json = { refresh_token = a.refresh_token } }), 401,
                "UNAUTHORIZED")
            assert.equal(200, login(email).status)
        end)

        it("rotates the refresh token; reusing a spent one revokes the session", function()
            local t = login(email).json
            local r1 = call("POST", "/api/auth/refresh", { json = { refresh_token = t.refresh_token } })
            assert.equal(200, r1.status, r1.body)
            assert.are_not.equal(t.refresh_token, r1.json.refresh_token)
            assert.equal(200, me(r1.json.access_token).status)
            -- the spent one again: reuse
            expect_error(call("POST", "/api/auth/refresh", { json = { refresh_token = t.refresh_token } }), 401,
                "UNAUTHORIZED")
            expect_error(me(r1.json.access_token), 401, "UNAUTHORIZED")
            expect_error(me(t.access_token), 401, "UNAUTHORIZED")
            expect_error(call("POST", "/api/auth/refresh", { json = { refresh_token = r1.json.refresh_token } }), 401,
                "UNAUTHORIZED")
        end)

        it("purges sessions over for more than a day, with their spent refresh tokens", function()
            -- a host with a fast purge, started once the tables exist
            local p = start(redis, { app = { session_purge_interval = 0.2 } })
            finally(function() p:stop() end)
            local t = login(email).json
            local sid = call("GET", "/api/auth/session", { token = t.access_token }).json.session_id
            assert.equal(200, call("POST", "/api/auth/refresh", { json = { refresh_token = t.refresh_token } }).status)
            local function rows()
                return tonumber(db.exec(format("SELECT (SELECT COUNT(*) FROM sessions WHERE id = %d) + "
                    .. "(SELECT COUNT(*) FROM session_spent_refresh WHERE session_id = %d)", sid, sid), DBNAME)[1][1])
            end
            assert.equal(2, rows())
            db.exec(format("UPDATE sessions SET revoked_at = UTC_TIMESTAMP(3) - INTERVAL 25 HOUR WHERE id = %d", sid),
                DBNAME)
            db.wait_until(function() return rows() == 0 end, 5, "the purge")
            p:stop()
            p:assert_no_errors()
        end)

        it("refuses missing, forged and expired tokens (401)", function()
            expect_error(me(nil), 401, "UNAUTHORIZED")
            local t = login(email).json.access_token
            local body, tag = t:match("^(.-)%.(.*)$")
            expect_error(me(body .. "." .. tag:reverse()), 401, "UNAUTHORIZED")
            expect_error(me(body .. "x." .. tag), 401, "UNAUTHORIZED")
        end)
    end)

    describe("profile", function()
        local email, token

        lazy_setup(function()
            email = new_email()
            signup_verified(email)
            token = login(email).json.access_token
        end)

        it("GET /api/users/me decrypts the profile", function()
            local res = me(token)
            assert.equal(200, res.status, res.body)
            assert.same({ email:lower(), "김민수", "010-1234-5678", "서울특별시 강남구 테헤란로 1", "선착순 구매 테스트 회원" },
                { res.json.email, res.json.name, res.json.phone, res.json.address, res.json.description })
            assert.equal(cjson.null, res.json.profile_img)
        end)

        it("PATCH /api/users/me is validated as at signup and writes nothing on failure", function()
            local bad = call("PATCH", "/api/users/me", { token = token,
                json = { phone = "02-123", name = "", email = "x@y.com", description = ("가"):rep(1001) } })
            local e = expect_error(bad, 400, "VALIDATION_FAILED")
            assert.equal("유효한 휴대폰 번호를 입력해주세요. (예: 010-1234-5678)", e.details.phone)
            assert.equal("이름을 입력해주세요.", e.details.name)
            assert.is_string(e.details.email)
            assert.is_string(e.details.description)
            assert.equal("010-1234-5678", me(token).json.phone)
            expect_error(call("PATCH", "/api/users/me", { token = token, json = {} }), 400, "VALIDATION_FAILED")

            local ok = call("PATCH", "/api/users/me", { token = token, json = { phone = "011-9999-0000",
                name = "이영희", profile_img = "https://img.fcfs.test/a.png", description = cjson.null } })
            assert.equal(200, ok.status, ok.body)
            assert.equal("011-9999-0000", ok.json.phone)
            assert.equal("이영희", ok.json.name)
            assert.equal(cjson.null, ok.json.description)
            assert.equal("https://img.fcfs.test/a.png", me(token).json.profile_img)
        end)

        it("GET /api/mypage gives profile, wishlist and recent orders in one call", function()
            local res = call("GET", "/api/mypage", { token = token })
            assert.equal(200, res.status, res.body)
            assert.equal(email:lower(), res.json.profile.email)
            assert.matches('"wishlist":%[%]', res.body)
            assert.matches('"recent_orders":%[%]', res.body)
        end)

        it("stores no plaintext email, name, phone, address or description", function()
            local dump = db.exec("SELECT HEX(CONCAT_WS('|', email_blind, email_enc, name_enc, phone_enc, address_enc, "
                .. "IFNULL(description_enc, ''), IFNULL(profile_img, ''), password_hash)) FROM users", DBNAME)
            local outbox = db.exec("SELECT HEX(message_enc) FROM mail_outbox", DBNAME)
            local all = {}
            for _, r in ipairs(dump) do all[#all + 1] = r[1] end
            for _, r in ipairs(outbox) do all[#all + 1] = r[1] end
            local text = table.concat(all, "\n")
            assert.is_true(#dump >= 1)
            for _, plain in ipairs { email:lower(), "Example.com", "example.com", RUN, "김민수", "이영희",
                "010-1234-5678", "011-9999-0000", "테헤란로", "선착순 구매", PASSWORD } do
                assert.is_nil(text:find(hex(plain), 1, true), "plaintext in MySQL: " .. plain)
            end
        end)
    end)

    describe("password change", function()
        it("checks the current password, the confirmation and the rules, then ends every session", function()
            local email = new_email()
            signup_verified(email)
            local a, b = login(email).json, login(email).json
            local function put(current, new, confirm)
                return call("PUT", "/api/users/me/password", { token = a.access_token,
                    json = { current_password = current, new_password = new, confirm_password = confirm } })
            end
            expect_error(put("nope1234!", "newpass1!", "newpass1!"),
                401, "WRONG_PASSWORD")
            expect_error(put(PASSWORD, "newpass1!", "newpass2!"),
                400, "PASSWORD_MISMATCH")
            local e = expect_error(put(PASSWORD, "weak", "weak"),
                400, "VALIDATION_FAILED")
            assert.equal("비밀번호는 최소 8자 이상이어야 하며, 숫자와 특수 문자를 포함해야 합니다.", e.details.new_password)
            assert.equal(200, me(a.access_token).status)

            local ok = put(PASSWORD, "newpass1!", "newpass1!")
            assert.equal(200, ok.status, ok.body)
            expect_error(me(a.access_token), 401, "UNAUTHORIZED")
            expect_error(me(b.access_token), 401, "UNAUTHORIZED")
            expect_error(call("POST", "/api/auth/refresh", { json = { refresh_token = b.refresh_token } }), 401,
                "UNAUTHORIZED")
            expect_error(login(email), 401, "INVALID_CREDENTIALS")
            assert.equal(200, login(email, "newpass1!").status)
        end)
    end)

    describe("login protection", function()
        it("gives the same answer for an unknown email and a wrong password, in comparable time", function()
            local email = new_email()
            signup_verified(email)
            local function timed(e)
                local t0 = now()
                local res = login(e, "Wrong123!")
                return now() - t0, res
            end
            redis:call("DEL", "rl:login:ip:127.0.0.1")
            local unknown, wrong = {}, {}
            local r_unknown, r_wrong
            for i = 1, 4 do
                unknown[i], r_unknown = timed(format("nobody%d.%s@example.com", i, RUN))
                wrong[i], r_wrong = timed(email)
            end
            expect_error(r_unknown, 401, "INVALID_CREDENTIALS")
            expect_error(r_wrong, 401, "INVALID_CREDENTIALS")
            assert.equal(r_unknown.json.error.message, r_wrong.json.error.message)
            assert.equal(r_unknown.body:gsub('"request_id":"[^"]*"', ""), r_wrong.body:gsub('"request_id":"[^"]*"', ""))
            table.sort(unknown)
            table.sort(wrong)
            local mu, mw = (unknown[2] + unknown[3]) / 2, (wrong[2] + wrong[3]) / 2
            print(format("\nlogin time, median of 4: unknown email %.1f ms, wrong password %.1f ms", mu * 1000,
                mw * 1000))
            assert.is_true(mu < 2 * mw and mw < 2 * mu, format("unknown %.4f s vs wrong %.4f s", mu, mw))
        end)

        -- The bound is the members acceptance, a property of the shipped (plain) build. Under ASan or
        -- the coverage run's Lua line hook every step on the loop is several times slower; there the
        -- spec asserts what the bound stands for: no probe waited as long as the fastest login took
        -- (one argon2 hash at least), which fails as soon as a hash runs on the loop.
        it("keeps /healthz under 50 ms during 20 concurrent logins", function()
            local email = new_email()
            signup_verified(email)
            local body = cjson.encode { email = email, password = PASSWORD }
            local req = format("POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s", #body, body)
            local socks, answers = {}, {}
            local sent, fastest = now(), math.huge
            for i = 1, 20 do
                local c = assert(socket.tcp())
                c:settimeout(5)
                assert(c:connect("127.0.0.1", s.port))
                assert(c:send(req))
                c:settimeout(0)
                socks[i], answers[i] = c, {}
            end
            local worst, probes, left = 0, 0, 20
            local deadline = now() + 60
            while left > 0 and now() < deadline do
                local t0 = now()
                local h = http.request { port = s.port, path = "/healthz", timeout = 5 }
                local dt = now() - t0
                assert.equal(200, h and h.status)
                probes = probes + 1
                if dt > worst then worst = dt end
                for i, c in pairs(socks) do
                    local data, err, partial = c:receive(8192)
                    answers[i][#answers[i] + 1] = data or partial
                    if err == "closed" then
                        c:close()
                        socks[i] = nil
                        left = left - 1
                        fastest = math.min(fastest, now() - sent)
                    end
                end
                socket.sleep(0.005)
            end
            assert.equal(0, left, "logins still running after 60 s")
            for i = 1, 20 do
                assert.matches("^HTTP/1.1 200", table.concat(answers[i]))
            end
            print(format("\n/healthz during 20 concurrent logins: %d probes, worst %.1f ms (fastest login %.1f ms)",
                probes, worst * 1000, fastest * 1000))
            if server.instrumented then
                assert.is_true(worst < fastest, format("worst /healthz %.1f ms, fastest login %.1f ms",
                    worst * 1000, fastest * 1000))
            else
                assert.is_true(worst < 0.05, format("worst /healthz %.1f ms", worst * 1000))
            end
        end)

        it("limits failures per email (429) and per client address (429)", function()
            local email = new_email()
            signup_verified(email)
            redis:call("DEL", "rl:login:ip:127.0.0.1")
            for _ = 1, 5 do expect_error(login(email, "Wrong123!"), 401, "INVALID_CREDENTIALS") end
            local e = login(email)
            expect_error(e, 429, "TOO_MANY_ATTEMPTS")
            assert.is_not_nil(e.headers["retry-after"])
            -- per address: other emails, same client
            redis:call("DEL", "rl:login:ip:127.0.0.1")
            for i = 1, 20 do
                expect_error(login(format("ip%d.%s@example.com", i, RUN), "Wrong123!"), 401, "INVALID_CREDENTIALS")
            end
            expect_error(login(format("ip-last.%s@example.com", RUN), "Wrong123!"), 429, "TOO_MANY_ATTEMPTS")
            redis:call("DEL", "rl:login:ip:127.0.0.1")
        end)
    end)

    describe("bad input on every route -> 400 with details, nothing written", function()
        local token

        lazy_setup(function()
            local email = new_email()
            signup_verified(email)
            token = login(email).json.access_token
        end)

        local LONG = ("a"):rep(300)
        local ROUTES = {
            { "POST", "/api/users",
                { email = 5, password = {}, name = LONG .. LONG, phone = "\xff\xfe", address = "ok" } },
            { "POST", "/api/users/verify", { email = "a@b.co", code = "12345\xc0" } },
            { "POST", "/api/users/verify/resend", { email = ("x"):rep(250) .. "@b.co" } },
            { "POST", "/api/auth/login", { email = "\xed\xa0\x80@b.co", password = true } },
            { "POST", "/api/auth/refresh", { refresh_token = LONG .. LONG } },
            { "PATCH", "/api/users/me", { name = "\xe4\xb8", address = 42 }, true },
            { "PUT", "/api/users/me/password", { current_password = 1, new_password = "x" }, true },
        }

        it("malformed JSON, wrong types, missing fields, over-long strings, invalid UTF-8", function()
            local function counts()
                return { count("users"), count("sessions"), count("mail_outbox"), count("email_verifications") }
            end
            local before = counts()
            for _, r in ipairs(ROUTES) do
                local method, path, body, authed = r[1], r[2], r[3], r[4]
                local t = authed and token or nil
                local e = expect_error(call(method, path, { token = t, body = "{\"a\":" }), 400, "BAD_JSON")
                assert.is_string(e.message)
                e = expect_error(call(method, path, { token = t, json = body }), 400, "VALIDATION_FAILED")
                assert.is_table(e.details, method .. " " .. path)
                local fields = 0
                for k, msg in pairs(e.details) do
                    fields = fields + 1
                    assert.is_string(msg, k)
                end
                assert.is_true(fields >= 1, method .. " " .. path)
                expect_error(call(method, path, { token = t, json = { 1, 2 } }), 400, "VALIDATION_FAILED")
                e = expect_error(call(method, path, { token = t, json = { unknown_field = "x" } }), 400,
                    "VALIDATION_FAILED")
                assert.is_string(e.details.unknown_field)
            end
            local q = call("GET", "/api/users/verify", { path = "/api/users/verify?email=%FF%FE&code=abc" })
            local e = expect_error(q, 400, "VALIDATION_FAILED")
            assert.is_string(e.details.email)
            assert.is_string(e.details.code)
            assert.same(before, counts())
        end)

        it("answers validation errors in English when Accept-Language prefers it", function()
            local res = call("POST", "/api/users", { json = {}, headers = { ["accept-language"] = "en-US,en;q=0.9" } })
            local e = expect_error(res, 400, "VALIDATION_FAILED")
            assert.equal("Please enter your email address.", e.details.email)
            assert.equal("Please enter your name.", e.details.name)
        end)
    end)

    describe("admin command (fcfs run lua/cli/admin.lua)", function()
        -- runs the script against the spec's server config; password: env (or nil), stdin: text
        local function admin(email, password, stdin)
            local env = password and ("FCFS_ADMIN_PASSWORD=" .. shell.q(password)) or ""
            local input = stdin and ("printf '%s\\n' " .. shell.q(stdin) .. " | ") or ""
            return shell.sh(format("cd %s && %s %s %s %s -c %s run lua/cli/admin.lua create %s",
                shell.q(s.dir), input, s.env_prefix, env, shell.q(s.bin), shell.q(s.conf_path),
                shell.q(email) .. (stdin and "" or " </dev/null")))
        end

        it("creates a verified ADMIN from the environment's password, never twice", function()
            local email = format("admin.%s@example.com", RUN)
            local code, out = admin(email, "Admin123!")
            assert.equal(0, code, out)
            local res = login(email, "Admin123!")
            assert.equal(200, res.status, res.body)
            assert.equal("ADMIN", res.json.user.role)
            assert.equal("ADMIN", call("GET", "/api/auth/session", { token = res.json.access_token }).json.role)
            code, out = admin(email:upper(), "Admin123!")
            assert.equal(2, code, out)
        end)

        it("reads the password from standard input and applies the password rules", function()
            local email = format("admin2.%s@example.com", RUN)
            local code, out = admin(email, nil, "weakpass")
            assert.equal(1, code, out)
            assert.matches("password", out)
            code, out = admin("not-an-email", "Admin123!")
            assert.equal(1, code, out)
            code, out = admin(email, nil, "Stdin123!")
            assert.equal(0, code, out)
            assert.equal(200, login(email, "Stdin123!").status)
        end)
    end)

    describe("revocation", function()
        -- a second host on the same Redis and MySQL, and a member's tokens it accepts
        local function second_host()
            local b = start(redis)
            finally(function() b:stop() end)
            local email = new_email()
            signup_verified(email)
            local t = login(email).json
            assert.equal(200, me(t.access_token, b).status)
            return b, t
        end

        local function refused_by(srv, token)
            local res = http.request { port = srv.port, path = "/api/auth/session",
                headers = { authorization = "Bearer " .. token } }
            return res and res.status == 401
        end

        it("reaches another host through pub/sub at once (the delay is printed)", function()
            local b, t = second_host()
            local t0 = now()
            assert.equal(204, call("POST", "/api/auth/logout", { token = t.access_token }).status)
            local t1 = now()
            local seen = db.wait_until(function() return refused_by(b, t.access_token) and now() end, 2,
                "the other host to refuse the token")
            print(format("\nrevocation: logout answered in %.1f ms; the other host refused the token %.1f ms "
                .. "after the answer", (t1 - t0) * 1000, (seen - t1) * 1000))
            b:stop()
            b:assert_no_errors()
        end)

        it("with 2 workers, a token revoked through one is refused by every worker in the next request", function()
            local w = start(redis, { workers = 2 })
            finally(function() w:stop() end)
            local email = new_email()
            signup_verified(email)
            local t = login(email, nil, w).json
            assert.equal(204, call("POST", "/api/auth/logout", { token = t.access_token, server = w }).status)
            -- fresh connections, spread over both workers
            for _ = 1, 20 do
                local res = assert(http.request { port = w.port, path = "/api/auth/session",
                    headers = { authorization = "Bearer " .. t.access_token } })
                assert.equal(401, res.status)
            end
            w:stop()
            w:assert_no_errors()
        end)

        it("still holds after Redis restarts, and a new host rebuilds it from Redis", function()
            local email = new_email()
            signup_verified(email)
            local t = login(email).json
            assert.equal(204, call("POST", "/api/auth/logout", { token = t.access_token }).status)
            redis:call("SAVE")
            redis:kill9()
            redis:restart()
            expect_error(me(t.access_token), 401, "UNAUTHORIZED")
            db.wait_until(function()
                local r = http.request { port = s.port, path = "/readyz" }
                return r and r.status == 200
            end, 10, "readyz after the Redis restart")
            local c = start(redis)
            finally(function() c:stop() end)
            expect_error(me(t.access_token, c), 401, "UNAUTHORIZED")
            c:stop()
            c:assert_no_errors()
        end)

        it("a subscriber that lost its connection rebuilds the set, so a lost message lets nothing through",
            function()
                local b, t = second_host()
                -- drop every subscriber connection, then revoke while they reconnect
                redis:call("CLIENT", "KILL", "TYPE", "pubsub")
                assert.equal(204, call("POST", "/api/auth/logout", { token = t.access_token }).status)
                db.wait_until(function() return refused_by(b, t.access_token) end, 5,
                    "the other host to refuse the token after resubscribing")
                b:stop()
                b:assert_no_errors({ "revocation subscriber" })
            end)
    end)

    it("logs no unexpected error", function()
        s:stop()
        s:assert_no_errors({ "revocation subscriber", "redis: no connection up" }) -- Redis was restarted
    end)
end)
