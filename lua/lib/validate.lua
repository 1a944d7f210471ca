-- lib/validate.lua: checking request input field by field, every failing field reported at once.
--
--   local RULES = validate.rules{
--       { "email", "email", required = true },
--       { "name", "text", required = true, max = 50, missing = validate.MSG.NAME_REQUIRED },
--       { "description", "text", max = 1000, multiline = true, nullable = true },
--   }
--   local v = validate.body(req, RULES)         -- req:json(), then validate.check
--   local v = validate.check(req, input, RULES)  -- any table (e.g. req:args())
--
-- check() returns a new table with the accepted values (emails lower-cased, an explicit null of a
-- nullable field as json.null, absent fields absent) or raises 400 VALIDATION_FAILED whose details
-- map every failing field to its message, in the request's language (web.lang: Korean by default,
-- English when Accept-Language prefers it). A field fails when it is missing while required, has the
-- wrong JSON type, is not valid UTF-8 (checked byte by byte: overlong forms, surrogates and code
-- points past U+10FFFF are refused), holds control characters, is longer than its limit (counted in
-- characters, i.e. code points) or does not have its kind's form. A field the rules do not name is
-- refused too ("not allowed"), so a client cannot slip `role` or `status` into a write.
--
-- Kinds: "text" (any UTF-8 text), "email" (API.md's pattern, at most 254 characters), "password"
-- (at least 8 characters, a digit, one of !@#$%^&*, no white space, at most 64), "phone"
-- (01[01]-dddd-dddd), "code" (6 digits), "url" (http or https, no white space), "token" (url-safe
-- base64 characters only).
local web = require "lib.web"
local json = require "lib.json"

local type, pairs, ipairs, setmetatable, next = type, pairs, ipairs, setmetatable, next
local byte, find, lower, format = string.byte, string.find, string.lower, string.format
local null = json.null
local fail, lang = web.fail, web.lang

local _M = {}

-- The messages: the original project's Korean ones (API.md) and their English equivalents. A value
-- may be a function of the rule (for limits).
local MSG = {
    INVALID = { ko = "입력값이 올바르지 않습니다.", en = "The input is not valid." },
    EMAIL_REQUIRED = { ko = "이메일을 입력해주세요.", en = "Please enter your email address." },
    EMAIL = { ko = "유효한 이메일 주소를 입력해주세요.", en = "Please enter a valid email address." },
    PASSWORD_REQUIRED = { ko = "비밀번호를 입력해주세요", en = "Please enter your password." },
    PASSWORD = {
        ko = "비밀번호는 최소 8자 이상이어야 하며, 숫자와 특수 문자를 포함해야 합니다.",
        en = "The password must be at least 8 characters long and contain a digit and a special character (!@#$%^&*).",
    },
    PHONE = {
        ko = "유효한 휴대폰 번호를 입력해주세요. (예: 010-1234-5678)",
        en = "Please enter a valid mobile phone number (e.g. 010-1234-5678).",
    },
    NAME_REQUIRED = { ko = "이름을 입력해주세요.", en = "Please enter your name." },
    ADDRESS_REQUIRED = { ko = "주소를 입력해주세요.", en = "Please enter your address." },
    CODE = { ko = "6자리 숫자 인증 코드를 입력해주세요.", en = "Please enter the 6-digit verification code." },
    URL = { ko = "올바른 이미지 URL(http 또는 https)을 입력해주세요.", en = "Please enter a valid http(s) image URL." },
    TOKEN = { ko = "올바른 토큰이 아닙니다.", en = "This is not a valid token." },
    REQUIRED = { ko = "필수 항목입니다.", en = "This field is required." },
    NOT_STRING = { ko = "문자열이어야 합니다.", en = "Must be a string." },
    NOT_UTF8 = { ko = "올바른 UTF-8 문자열이 아닙니다.", en = "Must be valid UTF-8 text." },
    CONTROL = { ko = "제어 문자는 사용할 수 없습니다.", en = "Control characters are not allowed." },
    NOT_ALLOWED = { ko = "허용되지 않는 항목입니다.", en = "This field is not allowed." },
    NOT_OBJECT = { ko = "요청 본문은 JSON 객체여야 합니다.", en = "The request body must be a JSON object." },
    TOO_LONG = {
        ko = function(n) return format("%d자 이하로 입력해주세요.", n) end,
        en = function(n) return format("Must be at most %d characters.", n) end,
    },
}
_M.MSG = MSG

---------------------------------------------------------------------------------------------------
-- UTF-8

-- utf8_len(s) -> number of code points, or nil when s is not valid UTF-8 (RFC 3629: no overlong
-- forms, no surrogates, nothing past U+10FFFF).
local function utf8_len(s)
    local i, n, len = 1, #s, 0
    while i <= n do
        local c = byte(s, i)
        if c < 0x80 then
            i = i + 1
        elseif c >= 0xC2 and c <= 0xDF then
            local c2 = byte(s, i + 1)
            if not c2 or c2 < 0x80 or c2 > 0xBF then return nil end
            i = i + 2
        elseif c >= 0xE0 and c <= 0xEF then
            local c2, c3 = byte(s, i + 1, i + 2)
            if not c3 or c3 < 0x80 or c3 > 0xBF then return nil end
            local lo, hi = 0x80, 0xBF
            if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
            if c2 < lo or c2 > hi then return nil end
            i = i + 3
        elseif c >= 0xF0 and c <= 0xF4 then
            local c2, c3, c4 = byte(s, i + 1, i + 3)
            if not c4 or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF then return nil end
            local lo, hi = 0x80, 0xBF
            if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
            if c2 < lo or c2 > hi then return nil end
            i = i + 4
        else
            return nil
        end
        len = len + 1
    end
    return len
end
_M.utf8_len = utf8_len

---------------------------------------------------------------------------------------------------
-- Kinds: each checks an already UTF-8-valid string and returns the value to keep, or nil, message.

local EMAIL_PATTERN = "^[A-Za-z0-9._%%+-]+@[A-Za-z0-9.-]+%.[A-Za-z][A-Za-z]+$"

local function tld_len(s)
    return #s:match("%.([A-Za-z]+)$")
end

local KINDS = {
    text = function(s) return s end,
    email = function(s)
        if not find(s, EMAIL_PATTERN) or tld_len(s) > 6 then return nil, MSG.EMAIL end
        return lower(s)
    end,
    password = function(s)
        if #s < 8 or not find(s, "%d") or not find(s, "[!@#$%%^&*]") or find(s, "%s") then
            return nil, MSG.PASSWORD
        end
        return s
    end,
    phone = function(s)
        if not find(s, "^01[01]%-%d%d%d%d%-%d%d%d%d$") then return nil, MSG.PHONE end
        return s
    end,
    code = function(s)
        if not find(s, "^%d%d%d%d%d%d$") then return nil, MSG.CODE end
        return s
    end,
    url = function(s)
        if not find(s, "^[Hh][Tt][Tt][Pp][Ss]?://[^%s/?#]+[^%s]*$") then return nil, MSG.URL end
        return s
    end,
    token = function(s)
        if not find(s, "^[%w%-_%.]+$") then return nil, MSG.TOKEN end
        return s
    end,
}

-- Default limits (characters) and "missing" messages per kind.
local KIND_MAX = { text = 255, email = 254, password = 64, phone = 13, code = 6, url = 1024, token = 512 }
local KIND_MISSING = {
    email = MSG.EMAIL_REQUIRED, password = MSG.PASSWORD_REQUIRED, phone = MSG.PHONE, code = MSG.CODE,
}

---------------------------------------------------------------------------------------------------
-- Rules

local Rules = {}
Rules.__index = Rules

-- validate.rules{ {name, kind, required=, max=, missing=, multiline=, nullable=}, ... }
function _M.rules(list)
    local by_name = {}
    for i, r in ipairs(list) do
        local name, kind = r[1], r[2] or "text"
        if type(name) ~= "string" or not KINDS[kind] then
            error("validate.rules: bad rule #" .. i, 2)
        end
        local rule = {
            name = name, kind = kind, check = KINDS[kind], required = r.required or false,
            max = r.max or KIND_MAX[kind], multiline = r.multiline or false, nullable = r.nullable or false,
            missing = r.missing or KIND_MISSING[kind] or MSG.REQUIRED,
        }
        list[i] = rule
        by_name[name] = rule
    end
    return setmetatable({ list = list, by_name = by_name }, Rules)
end

local function localize(l, msg, arg)
    local m = msg[l] or msg.ko
    if type(m) == "function" then return m(arg) end
    return m
end

-- Checks one present value against its rule: value | nil, message (a MSG entry), arg.
local function check_value(rule, v)
    if v == null then
        if rule.nullable then return null end
        if rule.required then return nil, rule.missing end
        return nil, MSG.NOT_STRING
    end
    if type(v) ~= "string" then return nil, MSG.NOT_STRING end
    -- too long whatever its characters (4 bytes each at most): refused before any byte is read
    if #v > rule.max * 4 then return nil, MSG.TOO_LONG, rule.max end
    local n = utf8_len(v)
    if not n then return nil, MSG.NOT_UTF8 end
    -- C0 controls and DEL; a multi-line field may hold line breaks and tabs
    if find(v, rule.multiline and "[%z\1-\8\11\12\14-\31\127]" or "[%z\1-\31\127]") then
        return nil, MSG.CONTROL
    end
    if v == "" or not find(v, "%S") then
        -- blank: null for a nullable text, else as good as missing (also where it is optional)
        if rule.kind == "text" and rule.nullable and not rule.required then return null end
        return nil, rule.missing
    end
    if n > rule.max then return nil, MSG.TOO_LONG, rule.max end
    return rule.check(v)
end

local function is_array(t)
    if json.is_array(t) then return true end
    local k = next(t)
    return type(k) == "number"
end

-- validate.check(req, input, rules) -> accepted values; raises 400 VALIDATION_FAILED (see header).
function _M.check(req, input, rules)
    local l = lang(req)
    if type(input) ~= "table" or is_array(input) then
        fail(400, "VALIDATION_FAILED", MSG.INVALID, { body = localize(l, MSG.NOT_OBJECT) })
    end
    local out, details = {}, nil
    local function bad(name, msg, arg)
        details = details or {}
        details[name] = localize(l, msg, arg)
    end
    for name in pairs(input) do
        if not rules.by_name[name] then
            -- echo a client's field name only when it is short and plain
            bad((#name <= 64 and find(name, "^[%w_]+$")) and name or "_other", MSG.NOT_ALLOWED)
        end
    end
    local list = rules.list
    for i = 1, #list do
        local rule = list[i]
        local v = input[rule.name]
        if v == nil then
            if rule.required then bad(rule.name, rule.missing) end
        else
            local ok, msg, arg = check_value(rule, v)
            if ok == nil then
                bad(rule.name, msg, arg)
            else
                out[rule.name] = ok
            end
        end
    end
    if details then
        fail(400, "VALIDATION_FAILED", MSG.INVALID, details)
    end
    return out
end

-- validate.object(req) -> req:json() when the body is a JSON object; else raises 400
-- VALIDATION_FAILED {body = NOT_OBJECT} (415 / 400 BAD_JSON come from req:json()). The decoder
-- cannot tell [] from {}: the body's first byte does.
function _M.object(req)
    local v = req:json()
    if is_array(v) or find(req.body, "^%s*%[") then
        fail(400, "VALIDATION_FAILED", MSG.INVALID, { body = localize(lang(req), MSG.NOT_OBJECT) })
    end
    return v
end

-- validate.body(req, rules): validate.check on validate.object(req).
function _M.body(req, rules)
    return _M.check(req, _M.object(req), rules)
end

-- validate.fail(req, field, msg [, arg]): raise VALIDATION_FAILED for one field (checks that need
-- more than the field itself, e.g. two passwords that differ).
function _M.fail(req, field, msg, arg)
    fail(400, "VALIDATION_FAILED", MSG.INVALID, { [field] = localize(lang(req), msg, arg) })
end

return _M
