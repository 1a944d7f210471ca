local helper = require "spec.unit.helper"

describe("lib.validate", function()
    local validate, web, json, SIGNUP

    setup(function()
        validate = helper.strict_require "lib.validate"
        web = require "lib.web"
        json = require "lib.json"
        SIGNUP = validate.rules {
            { "email", "email", required = true },
            { "password", "password", required = true },
            { "name", "text", required = true, max = 50, missing = validate.MSG.NAME_REQUIRED },
            { "phone", "phone", required = true },
            { "address", "text", required = true, max = 200, missing = validate.MSG.ADDRESS_REQUIRED },
            { "profile_img", "url", nullable = true },
            { "description", "text", max = 1000, multiline = true, nullable = true },
        }
    end)

    local GOOD = {
        email = "Kim@Example.COM", password = "abcd123!", name = "김철수", phone = "010-1234-5678",
        address = "서울시 강남구", description = "안녕하세요\n반갑습니다",
    }

    local function with(over)
        local t = {}
        for k, v in pairs(GOOD) do t[k] = v end
        for k, v in pairs(over) do
            if v == false then t[k] = nil else t[k] = v end
        end
        return t
    end

    -- the details of the VALIDATION_FAILED raised for input, in the language of the headers
    local function details_of(input, headers)
        local ok, e = pcall(validate.check, helper.req { headers = headers }, input, SIGNUP)
        assert.is_false(ok, "expected a validation failure")
        assert.is_true(web.is_fail(e), tostring(e))
        assert.equal(400, e.status)
        assert.equal("VALIDATION_FAILED", e.code)
        return e.details
    end

    it("accepts good input and lower-cases the email", function()
        local v = validate.check(helper.req(), GOOD, SIGNUP)
        assert.equal("kim@example.com", v.email)
        assert.equal("김철수", v.name)
        assert.equal("안녕하세요\n반갑습니다", v.description)
        assert.is_nil(v.profile_img)
    end)

    it("reports every failing field at once, with the original's Korean messages", function()
        local d = details_of({})
        assert.same({
            email = "이메일을 입력해주세요.",
            password = "비밀번호를 입력해주세요",
            name = "이름을 입력해주세요.",
            phone = "유효한 휴대폰 번호를 입력해주세요. (예: 010-1234-5678)",
            address = "주소를 입력해주세요.",
        }, d)
        d = details_of(with { email = "nope", password = "short1!", phone = "010-12-5678" })
        assert.same({
            email = "유효한 이메일 주소를 입력해주세요.",
            password = "비밀번호는 최소 8자 이상이어야 하며, 숫자와 특수 문자를 포함해야 합니다.",
            phone = "유효한 휴대폰 번호를 입력해주세요. (예: 010-1234-5678)",
        }, d)
    end)

    it("answers in English when Accept-Language prefers it", function()
        local d = details_of({ email = "x" }, { ["Accept-Language"] = "en-US,en;q=0.9,ko;q=0.5" })
        assert.equal("Please enter a valid email address.", d.email)
        assert.equal("Please enter your name.", d.name)
    end)

    it("applies the password rules", function()
        for _, pw in ipairs { "abcdefg1", "abcdefg!", "abc 123!x", "ab1!", string.rep("a1!", 30) } do
            assert.is_string(details_of(with { password = pw }).password, pw)
        end
        for _, pw in ipairs { "abcd123!", "12345678#", "P@ssw0rd" } do
            assert.equal(pw, validate.check(helper.req(), with { password = pw }, SIGNUP).password)
        end
    end)

    it("applies the email pattern", function()
        for _, e in ipairs { "a@b", "a@b.c", "a b@c.com", "a@b.toolongtld", "@b.com", "a@@b.com" } do
            assert.is_string(details_of(with { email = e }).email, e)
        end
    end)

    it("reports wrong types", function()
        local d = details_of(with { name = 42, address = { "x" }, phone = true })
        assert.equal("문자열이어야 합니다.", d.name)
        assert.equal("문자열이어야 합니다.", d.address)
        assert.equal("문자열이어야 합니다.", d.phone)
    end)

    it("refuses invalid UTF-8 byte by byte", function()
        local bad = {
            "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe4\xb8", "ab\x80",
            "\xf8\x88\x80\x80\x80",
        }
        for _, s in ipairs(bad) do
            assert.is_nil(validate.utf8_len(s), s)
            assert.equal("올바른 UTF-8 문자열이 아닙니다.", details_of(with { name = s }).name)
        end
        assert.equal(3, validate.utf8_len("김철수"))
        assert.equal(2, validate.utf8_len("\xf0\x9f\x98\x80a"))
    end)

    it("counts limits in characters", function()
        assert.equal("50자 이하로 입력해주세요.", details_of(with { name = string.rep("가", 51) }).name)
        assert.equal(string.rep("가", 50), validate.check(helper.req(), with { name = string.rep("가", 50) },
            SIGNUP).name)
        assert.equal("Must be at most 1000 characters.",
            details_of(with { description = string.rep("a", 1001) }, { ["Accept-Language"] = "en" }).description)
    end)

    it("refuses control characters (line breaks only where multi-line)", function()
        assert.equal("제어 문자는 사용할 수 없습니다.", details_of(with { name = "a\0b" }).name)
        assert.equal("제어 문자는 사용할 수 없습니다.", details_of(with { name = "a\nb" }).name)
        assert.equal("제어 문자는 사용할 수 없습니다.", details_of(with { description = "a\27b" }).description)
    end)

    it("takes a JSON object body and refuses an array, even an empty one", function()
        local function body_req(text)
            local r = helper.json_req("POST", "/x", text)
            r.json = function(self) return json.decode(self.body) end
            return r
        end
        assert.same({}, validate.object(body_req("{}")))
        for _, text in ipairs { "[]", " \n[]", "[1]", '[{"a":1}]' } do
            local ok, e = pcall(validate.object, body_req(text))
            assert.is_false(ok, text)
            assert.equal("VALIDATION_FAILED", e.code, text)
            assert.is_string(e.details.body, text)
        end
    end)

    it("refuses fields the rules do not name", function()
        local d = details_of(with { role = "ADMIN", [string.rep("x", 100)] = 1 })
        assert.equal("허용되지 않는 항목입니다.", d.role)
        assert.equal("허용되지 않는 항목입니다.", d._other)
    end)

    it("keeps an explicit null of a nullable field and refuses it for a required one", function()
        local v = validate.check(helper.req(), with { description = json.null, profile_img = json.null }, SIGNUP)
        assert.equal(json.null, v.description)
        assert.equal(json.null, v.profile_img)
        assert.equal("이름을 입력해주세요.", details_of(with { name = json.null }).name)
        assert.equal("이름을 입력해주세요.", details_of(with { name = "   " }).name)
    end)

    it("refuses a blank optional field that cannot be null (an update may not empty the name)", function()
        local rules = validate.rules { { "name", "text", missing = validate.MSG.NAME_REQUIRED } }
        local ok, e = pcall(validate.check, helper.req(), { name = " " }, rules)
        assert.is_false(ok)
        assert.equal("이름을 입력해주세요.", e.details.name)
        assert.same({}, validate.check(helper.req(), {}, rules))
    end)

    it("checks image URLs", function()
        assert.is_string(details_of(with { profile_img = "javascript:alert(1)" }).profile_img)
        assert.is_string(details_of(with { profile_img = "http://a b" }).profile_img)
        assert.equal("https://cdn.example.com/a.png",
            validate.check(helper.req(), with { profile_img = "https://cdn.example.com/a.png" }, SIGNUP).profile_img)
    end)

    it("refuses a body that is not an object", function()
        local ok, e = pcall(validate.check, helper.req(), { 1, 2 }, SIGNUP)
        assert.is_false(ok)
        assert.equal("VALIDATION_FAILED", e.code)
        assert.is_string(e.details.body)
    end)

    it("validates req:json() through validate.body", function()
        local req = helper.json_req("POST", "/x", GOOD)
        req.json = function() return require("lib.json").decode(req.body) end
        assert.equal("kim@example.com", validate.body(req, SIGNUP).email)
    end)
end)
