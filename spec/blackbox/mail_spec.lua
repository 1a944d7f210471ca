-- Black-box specs of the mail outbox (lua/mail.lua): the verification mail of a signup goes through
-- the smtp transport (host.tcp) to an SMTP sink this spec runs itself on a loopback port; a sink
-- that refuses first gets the message again after the backoff; the file transport writes each row
-- once. The repository's app, a database of its own, the shared test Redis.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/mail_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local db = require "spec.support.db"
local secrets = require "spec.support.secrets"

local format = string.format

local DBNAME = "fcfs_mail_spec"
local RUN = format("%x%x", os.time(), math.random(1, 0xffff))

-- One SMTP session on listener l: greets, takes one message, answers `data_reply` to its end of
-- DATA. Returns { mail_from, rcpt, data } or nil, err.
local function smtp_session(l, data_reply)
    local c, err = l:accept()
    if not c then return nil, err end
    c:settimeout(5)
    local got = { data = {} }
    local function say(line) c:send(line .. "\r\n") end
    say("220 sink ESMTP")
    local in_data = false
    while true do
        local line, rerr = c:receive("*l")
        if not line then
            c:close()
            return nil, rerr
        end
        if in_data then
            if line == "." then
                in_data = false
                say(data_reply)
            else
                got.data[#got.data + 1] = line:gsub("^%.%.", ".")
            end
        elseif line:match("^EHLO ") then
            c:send("250-sink\r\n250 8BITMIME\r\n")
        elseif line:match("^MAIL FROM:") then
            got.mail_from = line:match("<(.-)>")
            say("250 ok")
        elseif line:match("^RCPT TO:") then
            got.rcpt = line:match("<(.-)>")
            say("250 ok")
        elseif line == "DATA" then
            in_data = true
            say("354 go ahead")
        elseif line == "QUIT" then
            say("221 bye")
            c:close()
            got.data = table.concat(got.data, "\n")
            return got
        else
            say("500 what")
        end
    end
end

describe("mail", function()
    local s, sink

    local function signup(email)
        local res = assert(http.request { port = s.port, method = "POST", path = "/api/users",
            headers = { ["content-type"] = "application/json" },
            body = cjson.encode { email = email, password = "secret12!", name = "메일", phone = "010-1111-2222",
                address = "부산" } })
        assert.equal(202, res.status, res.body)
        return cjson.decode(res.body).user_id
    end

    lazy_setup(function()
        db.fresh(DBNAME)
        sink = assert(socket.bind("127.0.0.1", 0))
        sink:settimeout(10)
        local _, port = sink:getsockname()
        s = server.start {
            conf = {
                mysql_database = DBNAME,
                app = { mail_transport = "smtp", smtp_port = tonumber(port), mail_interval = 0.1,
                    mail_retry_base = 0.5, mail_from = "fcfs <no-reply@fcfs.test>" },
            },
            env = secrets.env(),
        }
        local code, out = s:cli("migrate")
        assert(code == 0, out)
    end)

    lazy_teardown(function()
        if s then s:stop() end
        if sink then sink:close() end
        db.query(format("DROP DATABASE IF EXISTS %s", DBNAME), false)
    end)

    it("delivers the verification mail over SMTP", function()
        local email = format("smtp.%s@example.com", RUN)
        local uid = signup(email)
        local got = assert(smtp_session(sink, "250 queued"))
        assert.equal("no-reply@fcfs.test", got.mail_from)
        assert.equal(email, got.rcpt)
        assert.matches("To: " .. email:gsub("%p", "%%%0"), got.data)
        assert.matches(format("Message%%-ID: <outbox%%.%%d+@fcfs%%.invalid>"), got.data)
        local row = db.wait_until(function()
            local r = db.exec(format("SELECT attempts, sent_at IS NOT NULL FROM mail_outbox WHERE user_id = %d", uid),
                DBNAME)[1]
            return r and r[2] == "1" and r
        end, 5, "sent_at")
        assert.equal("1", row[1])
    end)

    it("retries after a refusal, with backoff, and then delivers once", function()
        local email = format("retry.%s@example.com", RUN)
        local uid = signup(email)
        smtp_session(sink, "451 try again later") -- the client hangs up after the refusal
        local failed = db.wait_until(function()
            local r = db.exec(format("SELECT attempts, last_error FROM mail_outbox WHERE user_id = %d", uid), DBNAME)[1]
            return r and r[2] ~= db.NULL and r
        end, 5, "the failure to be recorded")
        assert.equal("1", failed[1])
        assert.matches("451", failed[2])
        local got = assert(smtp_session(sink, "250 queued"))
        assert.equal(email, got.rcpt)
        local row = db.wait_until(function()
            local r = db.exec(format("SELECT attempts, sent_at IS NOT NULL, last_error IS NULL FROM mail_outbox "
                .. "WHERE user_id = %d", uid), DBNAME)[1]
            return r and r[2] == "1" and r
        end, 5, "sent_at")
        assert.same({ "2", "1", "1" }, row)
        -- nothing else comes
        sink:settimeout(1)
        assert.same({ nil, "timeout" }, { sink:accept() })
        sink:settimeout(10)
    end)

    it("logs no unexpected error", function()
        s:stop()
        s:assert_no_errors()
    end)
end)
