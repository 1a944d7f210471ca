-- lib/fields.lua: input checks the commerce routes share, beside lib/validate.lua (which checks
-- text): integers, RFC 3339 times, list paging, and one VALIDATION_FAILED with every failing field.
--
--   local f = fields.new(req)                   -- collects failures
--   local n = f:int("quantity", v, 1, 99)        -- the integer, or nil (failure recorded)
--   local t = f:time("sale_starts_at", v)        -- seconds since the epoch, or nil
--   local s = f:text("name", v, RULES)           -- a text field checked by validate.check
--   f:bad("items", MSG)                          -- any other failure
--   f:done()                                     -- raises 400 VALIDATION_FAILED if any failed
--
--   local limit, after = fields.page(req)        -- ?limit= (default 20, max 100), ?cursor= -> id
--   local id = fields.path_id(req, not_found)    -- the route's :id, or not_found() past 2^53
--   fields.cursor(rows, limit)                   -- next_cursor of a page (json.null at the end)
--
--   fields.sql_time(t) -> "YYYY-MM-DD HH:MM:SS.mmm" (UTC) for MySQL; fields.app_conf(name, default)
--
-- Cursors are opaque to clients: base64url of "c1:<id>" (the last id of the page).
local web = require "lib.web"
local json = require "lib.json"
local validate = require "lib.validate"
local clock = require "lib.clock"
local host = require "host"

local type, tonumber, pcall, setmetatable, error = type, tonumber, pcall, setmetatable, error
local floor = math.floor
local date, format, match = os.date, string.format, string.match
local fail, lang, localize = web.fail, web.lang, web.localize

local _M = {}

local MSG = {
    INTEGER = {
        ko = function(lo, hi) return format("%d 이상 %d 이하의 정수를 입력해주세요.", lo, hi) end,
        en = function(lo, hi) return format("Must be an integer from %d to %d.", lo, hi) end,
    },
    TIME = {
        ko = "RFC 3339 형식의 시각을 입력해주세요. (예: 2026-12-24T10:00:00+09:00)",
        en = "Must be an RFC 3339 time (e.g. 2026-12-24T10:00:00+09:00).",
    },
    CURSOR = { ko = "올바른 커서가 아닙니다.", en = "This is not a valid cursor." },
}

-- Configuration: host.config.app[name] as a number, or default.
function _M.app_conf(name, default)
    local app = host.config.app
    local v = type(app) == "table" and tonumber(app[name]) or nil
    return v or default
end

local Checker = {}
Checker.__index = Checker

function _M.new(req)
    return setmetatable({ req = req, details = nil }, Checker)
end

-- f:bad(field, msg, ...): record a failure; msg is a {ko=, en=} table (values may be functions of ...).
function Checker:bad(field, msg, ...)
    local m = msg[lang(self.req)] or msg.ko
    if type(m) == "function" then m = m(...) end
    self.details = self.details or {}
    if self.details[field] == nil then self.details[field] = m end
end

function Checker:int(field, v, lo, hi)
    if type(v) ~= "number" or v ~= floor(v) or v < lo or v > hi then
        self:bad(field, MSG.INTEGER, lo, hi)
        return nil
    end
    return v
end

-- Times before 1970 are refused: no sale happens then, and MySQL's DATETIME stops at year 1000.
local MIN_YEAR = 1970
local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function days_in_month(y, m)
    if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then return 29 end
    return MONTH_DAYS[m]
end

-- RFC 3339 with a mandatory offset (Z or +hh:mm), optional fraction, a day that the month has
-- (2026-02-31 is refused, not read as March 3), year 1970 or later: seconds since the epoch.
function Checker:time(field, v)
    local y, mo, d, h, mi, s, frac, z, sign, oh, om
    if type(v) == "string" then
        y, mo, d, h, mi, s, frac, z = match(v, "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(%.?%d*)(.+)$")
    end
    if y and (frac == "" or #frac > 1) then
        if z == "Z" or z == "z" then
            sign, oh, om = "+", "00", "00"
        else
            sign, oh, om = match(z, "^([+-])(%d%d):(%d%d)$")
        end
    end
    local ok = sign and tonumber(y) >= MIN_YEAR and tonumber(mo) >= 1 and tonumber(mo) <= 12 and tonumber(d) >= 1
        and tonumber(d) <= days_in_month(tonumber(y), tonumber(mo)) and tonumber(h) <= 23 and tonumber(mi) <= 59
        and tonumber(s) <= 59 and tonumber(oh) <= 23 and tonumber(om) <= 59
    if not ok then
        self:bad(field, MSG.TIME)
        return nil
    end
    local t = clock.epoch_of_sql(format("%s-%s-%s %s:%s:%s%s", y, mo, d, h, mi, s, frac))
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    return sign == "+" and t - off or t + off
end

-- A text field under validate's rules (one rules set naming the field).
function Checker:text(field, v, rules)
    local ok, res = pcall(validate.check, self.req, { [field] = v }, rules)
    if ok then return res[field] end
    if not web.is_fail(res) then error(res, 0) end
    self.details = self.details or {}
    self.details[field] = res.details and res.details[field] or localize(self.req, validate.MSG.INVALID)
    return nil
end

function Checker:done()
    if self.details then fail(400, "VALIDATION_FAILED", validate.MSG.INVALID, self.details) end
end

---------------------------------------------------------------------------------------------------
-- Ids

-- Ids are integers below 2^53 (JSON numbers stay exact there; AUTO_INCREMENT never gets that
-- far): anything past fields.MAX_ID names nothing.
local MAX_ID = 2 ^ 53 - 1
_M.MAX_ID = MAX_ID

-- fields.id(s) -> the id that the digits s spell, or nil when s is nil, empty or past MAX_ID.
function _M.id(s)
    local n = s and #s <= 16 and tonumber(s)
    if not n or n > MAX_ID then return nil end
    return n
end

-- fields.path_id(req, not_found) -> the route's :id as a number; calls not_found() (which raises
-- the route's 404) for an id that cannot exist.
function _M.path_id(req, not_found)
    local id = _M.id(req.params.id)
    if not id then not_found() end
    return id
end

---------------------------------------------------------------------------------------------------
-- Paging

-- fields.page(req) -> limit, after_id (nil for the first page); raises 400 on bad input.
function _M.page(req)
    local f = _M.new(req)
    local limit, after = 20, nil
    local l = req:arg("limit")
    if l ~= nil then limit = f:int("limit", tonumber(l), 1, 100) end
    local c = req:arg("cursor")
    if c ~= nil and c ~= "" then
        local plain = host.crypto.b64url_decode(c)
        after = _M.id(plain and match(plain, "^c1:(%d+)$"))
        if not after then f:bad("cursor", MSG.CURSOR) end
    end
    f:done()
    return limit, after
end

-- fields.cursor(items, limit): the cursor after the last item when the page is full, else json.null.
-- Callers fetch limit + 1 rows and pass them all: a (limit + 1)th row means there is a next page; it
-- is removed from items here.
function _M.cursor(items, limit)
    if #items <= limit then return json.null end
    items[#items] = nil
    return host.crypto.b64url_encode(format("c1:%d", items[#items].id))
end

---------------------------------------------------------------------------------------------------
-- Times

-- fields.sql_time(t) -> a UTC DATETIME(3) literal of t (seconds since the epoch).
function _M.sql_time(t)
    local whole = floor(t)
    local ms = floor((t - whole) * 1000 + 0.5)
    if ms == 1000 then whole, ms = whole + 1, 0 end
    return date("!%Y-%m-%d %H:%M:%S", whole) .. format(".%03d", ms)
end

return _M
