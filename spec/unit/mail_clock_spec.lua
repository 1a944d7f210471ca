local helper = require "spec.unit.helper"

describe("lib.clock", function()
    local clock

    setup(function()
        clock = helper.strict_require "lib.clock"
    end)

    before_each(function()
        helper.reset()
    end)

    it("shows UTC times from MySQL in the business time zone (+09:00 by default)", function()
        assert.equal("2026-12-02T06:33:00.487+09:00", clock.from_sql("2026-12-01 21:33:00.487"))
        assert.equal("2024-03-01T08:59:59.000+09:00", clock.from_sql("2024-02-29 23:59:59"))
        assert.equal(0, clock.epoch_of_sql("1970-01-01 00:00:00"))
        assert.equal(951782400, clock.epoch_of_sql("2000-02-29 00:00:00"))
        assert.equal(require("lib.json").null, clock.from_sql(helper.host.null))
    end)

    it("takes the offset from host.config.app.utc_offset", function()
        helper.host.config = { app = { utc_offset = "-05:30" } }
        assert.equal("1969-12-31T18:30:00.250-05:30", clock.rfc3339(0.25))
    end)

    it("formats the times of one second, of the next and under a changed offset each right", function()
        local t = 1796171963 -- 2026-12-02T00:39:23Z
        assert.equal("2026-12-02T09:39:23.100+09:00", clock.rfc3339(t + 0.1))
        assert.equal("2026-12-02T09:39:23.999+09:00", clock.rfc3339(t + 0.999))
        assert.equal("2026-12-02T09:39:24.000+09:00", clock.rfc3339(t + 0.9996))
        assert.equal("2026-12-02T09:39:24.001+09:00", clock.rfc3339(t + 1.001))
        helper.host.config = { app = { utc_offset = "-05:30" } }
        assert.equal("2026-12-01T19:09:24.002-05:30", clock.rfc3339(t + 1.002))
        assert.equal("2026-12-01T19:09:24.002-05:30", clock.rfc3339(t + 1.002))
        helper.host.config = { app = { utc_offset = "+09:00" } }
        assert.equal("2026-12-02T09:39:24.002+09:00", clock.rfc3339(t + 1.002))
    end)
end)

describe("mail", function()
    local mail

    setup(function()
        mail = helper.strict_require "mail"
    end)

    before_each(function()
        helper.reset()
    end)

    local function decode_b64(s)
        s = s:gsub("%s", ""):gsub("=+$", ""):gsub("%+", "-"):gsub("/", "_")
        return helper.host.crypto.b64url_decode(s)
    end

    it("formats an RFC 5322 message: CRLF lines, encoded-word subject, base64 body", function()
        local body = "인증 코드: 123456\n.\nhttp://x/verify?code=123456\n" .. ("가"):rep(100)
        local text = mail.format(42, { to = "kim@example.com", subject = "[fcfs] 이메일 인증", body = body })
        local head, b = text:match("^(.-)\r\n\r\n(.*)$")
        assert.is_nil(head:find("[^\r]\n"), "bare LF in the head")
        assert.matches("\r\nTo: kim@example.com\r\n", "\r\n" .. head .. "\r\n")
        assert.matches("Message%-ID: <outbox%.42@fcfs%.invalid>", head)
        assert.matches("MIME%-Version: 1%.0", head)
        assert.matches("Date: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d %+0000", head)
        local subject = head:match("Subject: =%?UTF%-8%?B%?([^?]+)%?=")
        assert.equal("[fcfs] 이메일 인증", decode_b64(subject))
        for line in b:gmatch("[^\r\n]+") do assert.is_true(#line <= 76) end
        assert.equal(body, decode_b64(b))
    end)

    it("leaves a plain ASCII subject as it is", function()
        local text = mail.format(1, { to = "a@b.co", subject = "hello", body = "x" })
        assert.matches("\r\nSubject: hello\r\n", text)
    end)
end)
