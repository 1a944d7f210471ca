-- lib/clock.lua: times as the API shows them.
--
--   clock.rfc3339(epoch_seconds)        -> "2026-12-02T06:33:00.487+09:00"
--   clock.from_sql("2026-12-01 21:33:00.487") -> the same, for a UTC DATETIME(3) read from MySQL
--
-- The business time zone is a fixed offset, host.config.app.utc_offset (default "+09:00",
-- Asia/Seoul, which has no daylight saving time). MySQL holds UTC (the statements write
-- UTC_TIMESTAMP(3)).
local host = require "host"
local json = require "lib.json"

local type, tonumber = type, tonumber
local floor = math.floor
local date, format, match = os.date, string.format, string.match

local _M = {}

local function offset()
    local app = host.config.app
    local o = type(app) == "table" and app.utc_offset or "+09:00"
    local sign, h, m = match(o, "^([+-])(%d%d):(%d%d)$")
    if not sign then return 9 * 3600, "+09:00" end
    local secs = tonumber(h) * 3600 + tonumber(m) * 60
    return sign == "-" and -secs or secs, o
end

-- clock.rfc3339(t) -> RFC 3339 text with milliseconds in the business time zone.
-- The last time formatted (and the offset setting it used) and its text: requests of one session
-- show the same expiry, rows of one list often the same time. The date and time of day of the last
-- whole second too: the times of one busy second (say the deadlines of a sale's holds) differ in
-- their milliseconds only.
local last_t, last_setting, last_text
local last_whole, last_day, last_offset

function _M.rfc3339(t)
    local app = host.config.app
    local setting = type(app) == "table" and app.utc_offset
    if t == last_t and setting == last_setting then return last_text end
    local whole = floor(t)
    local ms = floor((t - whole) * 1000 + 0.5)
    if ms == 1000 then whole, ms = whole + 1, 0 end
    if whole ~= last_whole or setting ~= last_setting then
        local secs, o = offset()
        last_whole, last_day, last_offset = whole, date("!%Y-%m-%dT%H:%M:%S", whole + secs), o
    end
    last_t, last_setting = t, setting
    last_text = last_day .. format(".%03d", ms) .. last_offset
    return last_text
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

-- clock.epoch_of_sql(s) -> seconds since the epoch of a UTC "YYYY-MM-DD HH:MM:SS[.fff]", or nil.
function _M.epoch_of_sql(s)
    local y, mo, d, h, mi, sec, frac = match(s, "^(%d+)-(%d+)-(%d+) (%d+):(%d+):(%d+)%.?(%d*)$")
    if not y then return nil end
    local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600
        + tonumber(mi) * 60 + tonumber(sec)
    if frac ~= "" then t = t + tonumber("0." .. frac) end
    return t
end

-- clock.from_sql(s) -> RFC 3339 text, or json.null for a NULL / missing time.
function _M.from_sql(s)
    if type(s) ~= "string" then return json.null end
    local t = _M.epoch_of_sql(s)
    if not t then return json.null end
    return _M.rfc3339(t)
end

return _M
