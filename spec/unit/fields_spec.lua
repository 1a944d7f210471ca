local helper = require "spec.unit.helper"

describe("lib.fields", function()
    local fields, web

    setup(function()
        fields = helper.strict_require "lib.fields"
        web = require "lib.web"
    end)

    before_each(function() helper.reset() end)

    -- the details of the VALIDATION_FAILED that fn raises
    local function failure(fn)
        local ok, e = pcall(fn)
        assert.is_false(ok)
        assert.is_true(web.is_fail(e), tostring(e))
        assert.equal(400, e.status)
        assert.equal("VALIDATION_FAILED", e.code)
        return e.details
    end

    local function req(query, lang)
        local r = helper.req { query = query, headers = { ["accept-language"] = lang } }
        r.arg = function(self, name) return web.parse_query(self.query)[name] end
        return r
    end

    it("accepts integers in range and reports every failing field at once", function()
        local f = fields.new(req())
        assert.equal(5, f:int("a", 5, 1, 99))
        assert.is_nil(f:int("b", 0, 1, 99))
        assert.is_nil(f:int("c", 1.5, 1, 99))
        assert.is_nil(f:int("d", "7", 1, 99))
        local d = failure(function() f:done() end)
        assert.same({ "b", "c", "d" }, (function()
            local k = {}
            for name in pairs(d) do k[#k + 1] = name end
            table.sort(k)
            return k
        end)())
        assert.equal("1 이상 99 이하의 정수를 입력해주세요.", d.b)
        local en = fields.new(req(nil, "en"))
        en:int("q", 100, 1, 99)
        assert.equal("Must be an integer from 1 to 99.", failure(function() en:done() end).q)
    end)

    it("reads RFC 3339 times with an offset into epoch seconds", function()
        local f = fields.new(req())
        assert.equal(1798074000, f:time("t", "2026-12-24T10:00:00+09:00"))
        assert.equal(1798074000.25, f:time("t", "2026-12-24T01:00:00.25Z"))
        assert.equal(1798074000, f:time("t", "2026-12-23T20:00:00-05:00"))
        for _, bad in ipairs { "2026-12-24 10:00:00", "2026-12-24T10:00:00", "2026-13-01T00:00:00Z", "tomorrow", 5,
            "2026-12-24T10:00:00+9:00", "2026-12-24T10:00:00.Z", "2026-02-31T10:00:00Z", "2027-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z", "0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z" } do
            local g = fields.new(req())
            assert.is_nil(g:time("t", bad), tostring(bad))
            assert.is_string(failure(function() g:done() end).t)
        end
    end)

    it("takes the days each month has, leap days included", function()
        local f = fields.new(req())
        assert.equal(1709164800, f:time("t", "2024-02-29T00:00:00Z"))
        assert.equal(951782400, f:time("t", "2000-02-29T00:00:00Z"))
        assert.is_nil(f:time("t", "1900-02-29T00:00:00Z"))
        assert.is_number(f:time("u", "2026-12-31T23:59:59Z"))
    end)

    it("reads ids below 2^53 and nothing else", function()
        assert.equal(7, fields.id("007"))
        assert.equal(2 ^ 53 - 1, fields.id("9007199254740991"))
        for _, bad in ipairs { "9007199254740992", "99999999999999999999", string.rep("9", 400), "", "x" } do
            assert.is_nil(fields.id(bad), bad)
        end
        assert.is_nil(fields.id(nil))
        local missing = function() error("404") end
        assert.equal(12, fields.path_id({ params = { id = "12" } }, missing))
        assert.has_error(function() fields.path_id({ params = { id = string.rep("9", 30) } }, missing) end, "404")
    end)

    it("formats UTC DATETIME(3) literals", function()
        assert.equal("2026-12-24 01:00:00.250", fields.sql_time(1798074000.25))
        assert.equal("2026-12-24 01:00:01.000", fields.sql_time(1798074000.9996))
    end)

    it("pages: limit 1-100 (default 20), an opaque cursor round trip", function()
        assert.same({ 20 }, { fields.page(req("")) })
        local items = {}
        for i = 1, 4 do items[i] = { id = 10 + i } end
        local cursor = fields.cursor(items, 3)
        assert.equal(3, #items)
        assert.same({ 3, 13 }, { fields.page(req("limit=3&cursor=" .. cursor)) })
        assert.equal(require("lib.json").null, fields.cursor({ { id = 1 } }, 3))
        assert.is_string(failure(function() fields.page(req("limit=101")) end).limit)
        assert.is_string(failure(function() fields.page(req("limit=0")) end).limit)
        assert.is_string(failure(function() fields.page(req("cursor=zz")) end).cursor)
        local past = require("host").crypto.b64url_encode("c1:" .. string.rep("9", 400))
        assert.is_string(failure(function() fields.page(req("cursor=" .. past)) end).cursor)
    end)
end)
